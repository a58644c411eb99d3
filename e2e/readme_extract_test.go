package e2e

// The README's flows as plans a test can run: a section's code blocks
// (indented or fenced), the "# on the builder" / "# on the client"
// segments inside them, the shell statements of each segment, the
// test's substitutions (README text → test text, each with its reason)
// and its stand-ins for what this machine lacks (systemd as PID 1,
// logind). Pure: no root, no Nix; TestReadmeFlowPlans checks every
// flow's plan on the README as it is.

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

// readmeBlock is one code block of a README section.
type readmeBlock struct {
	intro string // the paragraph just before it, on one line
	text  string // its lines without their indentation, ending in a newline
	line  int    // the README line of its first line (1-based)
}

// readmeSection returns the lines of the section whose heading line is
// heading (such as "## Exec mode, in five steps"), up to the next
// heading of that level or above, and the README line number of its
// first line.
func readmeSection(readme, heading string) ([]string, int, error) {
	lines := strings.Split(readme, "\n")
	level := strings.Index(heading, " ")
	if level < 1 || strings.Trim(heading[:level], "#") != "" {
		return nil, 0, fmt.Errorf("%q is not a Markdown heading", heading)
	}
	for i, l := range lines {
		if strings.TrimRight(l, " ") != heading {
			continue
		}
		end := len(lines)
		fenced := false
		for j := i + 1; j < len(lines); j++ {
			if strings.HasPrefix(strings.TrimSpace(lines[j]), "```") {
				fenced = !fenced
			}
			if h := strings.Index(lines[j], " "); !fenced && h >= 1 && h <= level && strings.Trim(lines[j][:h], "#") == "" {
				end = j
				break
			}
		}
		return lines[i+1 : end], i + 2, nil
	}
	return nil, 0, fmt.Errorf("no section %q (was it renamed or moved? the flow's test follows it)", heading)
}

// indentOf returns how many spaces line starts with.
func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

// listItem matches the start of a Markdown list item; its length is the
// indentation of the item's content.
var listItem = regexp.MustCompile(`^ *(?:[-*+]|[0-9]+[.)]) +`)

// readmeBlocks returns the code blocks of a section's lines (first is the
// README line number of lines[0]): fenced blocks, and indented blocks —
// lines after a blank line indented at least four spaces deeper than the
// paragraph or list item they belong to, up to the first line indented
// less (blank lines inside are kept).
func readmeBlocks(lines []string, first int) []readmeBlock {
	var blocks []readmeBlock
	var para []string
	content := 0 // the indentation of the current paragraph's content
	blank := true
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trimmed := strings.TrimSpace(l)
		switch {
		case trimmed == "":
			blank = true
			continue
		case strings.HasPrefix(trimmed, "```"):
			indent := indentOf(l)
			var body []string
			j := i + 1
			for ; j < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[j]), "```"); j++ {
				body = append(body, strings.TrimPrefix(lines[j], strings.Repeat(" ", indent)))
			}
			blocks = append(blocks, readmeBlock{intro: strings.Join(para, " "), text: strings.Join(body, "\n") + "\n", line: first + i + 1})
			i, para, blank = j, nil, true
			continue
		case blank && indentOf(l) >= content+4:
			indent := indentOf(l)
			var body []string
			j := i
			for ; j < len(lines) && (strings.TrimSpace(lines[j]) == "" || indentOf(lines[j]) >= indent); j++ {
				body = append(body, strings.TrimPrefix(lines[j], strings.Repeat(" ", indent)))
			}
			for len(body) > 0 && strings.TrimSpace(body[len(body)-1]) == "" {
				body = body[:len(body)-1]
			}
			blocks = append(blocks, readmeBlock{intro: strings.Join(para, " "), text: strings.Join(body, "\n") + "\n", line: first + i})
			i, para, blank = j-1, nil, true
			continue
		}
		if m := listItem.FindString(l); blank || m != "" {
			para = nil
			content = indentOf(l)
			if m != "" {
				content = len(m)
			}
		}
		para = append(para, trimmed)
		blank = false
	}
	return blocks
}

// inlineCode returns the code spans (`…`) of a paragraph.
func inlineCode(paragraph string) []string {
	var spans []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(paragraph, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

// readmeParagraph returns the first paragraph of lines that contains
// phrase, on one line.
func readmeParagraph(lines []string, phrase string) (string, error) {
	var para []string
	for _, l := range append(lines, "") {
		if strings.TrimSpace(l) != "" {
			para = append(para, strings.TrimSpace(l))
			continue
		}
		if p := strings.Join(para, " "); strings.Contains(p, phrase) {
			return p, nil
		}
		para = nil
	}
	return "", fmt.Errorf("no paragraph says %q", phrase)
}

// Where a segment of a flow runs.
const (
	onBuilder = "builder"
	onClient  = "client"
)

// segmentHeader is the comment that starts a segment of a code block:
// "# on the builder, from a checkout", "# on the client (as root, …)",
// "# on the builder again".
var segmentHeader = regexp.MustCompile(`^# on the (\w+)\b`)

// readmeSegment is a part of a flow's commands that runs in one place.
type readmeSegment struct {
	where string // onBuilder or onClient
	text  string // its commands, the header comment left out
}

// readmeSegments splits a code block at its segment headers; the text
// before the first header runs where the flow was (where).
func readmeSegments(text, where string) ([]readmeSegment, error) {
	var segs []readmeSegment
	var cur []string
	flush := func() {
		if strings.TrimSpace(strings.Join(cur, "\n")) != "" {
			segs = append(segs, readmeSegment{where: where, text: strings.Join(cur, "\n") + "\n"})
		}
		cur = nil
	}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		m := segmentHeader.FindStringSubmatch(l)
		if m == nil {
			cur = append(cur, l)
			continue
		}
		if m[1] != onBuilder && m[1] != onClient {
			return nil, fmt.Errorf("%q: the test knows a builder and a client, not %q", l, m[1])
		}
		flush()
		where = m[1]
	}
	flush()
	return segs, nil
}

// shellSteps splits a script into the statements a reader types one
// after another, `a && b` as a, then b (the flow stops at the first
// that fails either way), each printed back as shell text (comments
// left out, here-documents kept).
func shellSteps(script string) ([]string, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(script), "")
	if err != nil {
		return nil, err
	}
	var flat func(s *syntax.Stmt) []*syntax.Stmt
	flat = func(s *syntax.Stmt) []*syntax.Stmt {
		if b, ok := s.Cmd.(*syntax.BinaryCmd); ok && b.Op == syntax.AndStmt && !s.Negated && !s.Background && len(s.Redirs) == 0 {
			return append(flat(b.X), flat(b.Y)...)
		}
		return []*syntax.Stmt{s}
	}
	var steps []string
	for _, s := range f.Stmts {
		for _, st := range flat(s) {
			var b bytes.Buffer
			if err := syntax.NewPrinter().Print(&b, &syntax.File{Stmts: []*syntax.Stmt{st}}); err != nil {
				return nil, err
			}
			steps = append(steps, strings.TrimRight(b.String(), "\n"))
		}
	}
	return steps, nil
}

// substitution is one change the test makes to a flow's README text
// before running it. Each must change something, so that the README
// cannot move away from what the test runs.
type substitution struct {
	readme string // a regular expression over the README's text
	test   string // its replacement (regexp.Expand syntax)
	why    string
}

// standIn is what the test does instead of a README command that needs
// what this machine lacks: systemd as PID 1 (systemctl), logind
// (loginctl). Each must stand in for at least one command.
type standIn struct {
	readme string // the command, as shellSteps prints it
	why    string
	do     func(t *testing.T, s *session)
}

// needsStandIn matches the commands that cannot run here as written.
var needsStandIn = regexp.MustCompile(`^(systemctl|loginctl)\b`)

// readmeFlow is one flow of the README: where its commands are and what
// the test changes in them.
type readmeFlow struct {
	// doc is the file the flow is in, relative to the repository;
	// empty means README.md.
	doc     string
	heading string // its section
	// intro is how the paragraph before its first block starts; empty
	// means the section's first block.
	intro string
	// blocks is how many code blocks the flow has, and sectionBlocks how
	// many its section has: a block added to the section fails the test
	// until the test knows what it is.
	blocks, sectionBlocks int
	// shows are the indexes of the flow's blocks that show output (what a
	// command prints or writes) rather than commands to run.
	shows    []int
	subs     []substitution
	standIns []standIn
}

// planStep is one command of a plan: shell text, or a stand-in.
type planStep struct {
	text    string   // what the shell runs (after the substitutions)
	readme  string   // the README's text of it, for messages
	standIn *standIn // what runs instead, when set
}

// planSegment is a run of steps in one place.
type planSegment struct {
	where string
	steps []planStep
}

// flowPlan is a flow ready to run: its segments in order, the blocks it
// shows, and the lines of its section after its last block (where the
// README says what to do with what the flow printed).
type flowPlan struct {
	segments []planSegment
	shown    []readmeBlock
	after    []string
}

// file is the flow's file, relative to the repository.
func (f readmeFlow) file() string {
	if f.doc == "" {
		return "README.md"
	}
	return f.doc
}

// plan reads the flow from readme, the text of its file, and makes its
// plan.
func (f readmeFlow) plan(readme string) (flowPlan, error) {
	lines, first, err := readmeSection(readme, f.heading)
	if err != nil {
		return flowPlan{}, fmt.Errorf("%s: %v", f.file(), err)
	}
	all := readmeBlocks(lines, first)
	describe := func() string {
		var s []string
		for _, b := range all {
			s = append(s, fmt.Sprintf("  %s:%d, after %q: %q", f.file(), b.line, clip(b.intro, 60), clip(b.text, 60)))
		}
		return strings.Join(s, "\n")
	}
	if len(all) != f.sectionBlocks {
		return flowPlan{}, fmt.Errorf("%s has %d code blocks, the test knows %d: teach the test the new ones\n%s", f.heading, len(all), f.sectionBlocks, describe())
	}
	start := -1
	for i, b := range all {
		if strings.HasPrefix(b.intro, f.intro) {
			start = i
			break
		}
	}
	if start < 0 || start+f.blocks > len(all) {
		return flowPlan{}, fmt.Errorf("%s: no %d code block(s) after a paragraph starting %q\n%s", f.heading, f.blocks, f.intro, describe())
	}
	last := all[start+f.blocks-1]
	p := flowPlan{after: lines[last.line-first+strings.Count(last.text, "\n"):]}
	counts := make([]int, len(f.subs))
	stood := make([]int, len(f.standIns))
	where := onBuilder
	for i, b := range all[start : start+f.blocks] {
		if containsInt(f.shows, i) {
			p.shown = append(p.shown, b)
			continue
		}
		segs, err := readmeSegments(b.text, where)
		if err != nil {
			return flowPlan{}, fmt.Errorf("%s:%d: %v", f.file(), b.line, err)
		}
		for _, seg := range segs {
			where = seg.where
			readmeSteps, err := shellSteps(seg.text)
			if err != nil {
				return flowPlan{}, fmt.Errorf("%s:%d: the shell cannot parse the block: %v\n%s", f.file(), b.line, err, b.text)
			}
			ps := planSegment{where: seg.where}
			for _, step := range readmeSteps {
				text := step
				for k, s := range f.subs {
					re := regexp.MustCompile(s.readme)
					counts[k] += len(re.FindAllStringIndex(text, -1))
					text = re.ReplaceAllString(text, s.test)
				}
				st := planStep{text: text, readme: step}
				for k := range f.standIns {
					if text == f.standIns[k].readme {
						st.standIn = &f.standIns[k]
						stood[k]++
					}
				}
				if st.standIn == nil && needsStandIn.MatchString(text) {
					return flowPlan{}, fmt.Errorf("%s:%d: %q needs systemd or logind, which this machine lacks, and the test has no stand-in for it", f.file(), b.line, text)
				}
				ps.steps = append(ps.steps, st)
			}
			p.segments = append(p.segments, ps)
		}
	}
	for k, s := range f.subs {
		if counts[k] == 0 {
			return flowPlan{}, fmt.Errorf("%s: the substitution of %q (%s) matches nothing: the README changed, so must the test", f.heading, s.readme, s.why)
		}
	}
	for k, s := range f.standIns {
		if stood[k] == 0 {
			return flowPlan{}, fmt.Errorf("%s: the stand-in for %q (%s) stands in for nothing: the README changed, so must the test", f.heading, s.readme, s.why)
		}
	}
	return p, nil
}

// mustPlan is plan that fails the test on an error.
func (f readmeFlow) mustPlan(t testing.TB) flowPlan {
	t.Helper()
	p, err := f.plan(readFile(t, repoFile(t, f.file())))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// clip shortens s to n bytes for a message.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", "⏎")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TestReadmeExtract checks the README reader on Markdown of its own:
// indented blocks at the top level and in list items, fenced blocks, the
// paragraph before each, segments and shell steps.
func TestReadmeExtract(t *testing.T) {
	md := "# T\n\n## A\n\nIntro:\n\n    one\n\n    two\n\n1. Step\n   more:\n\n       three <<'EOF'\n       x\n       EOF\n\n   after\n\n```toml\nfour = 4\n```\n\n## B\n\n    five\n"
	lines, first, err := readmeSection(md, "## A")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(lines, first)
	want := []readmeBlock{
		{intro: "Intro:", text: "one\n\ntwo\n", line: 7},
		{intro: "1. Step more:", text: "three <<'EOF'\nx\nEOF\n", line: 14},
		{intro: "after", text: "four = 4\n", line: 21},
	}
	if fmt.Sprint(blocks) != fmt.Sprint(want) {
		t.Errorf("blocks:\n%+v\nwant\n%+v", blocks, want)
	}
	if _, _, err := readmeSection(md, "## C"); err == nil {
		t.Error("a missing section was found")
	}
	segs, err := readmeSegments("a\n# on the client, as root\nb\n# on the builder again\nc && d\n", onBuilder)
	if err != nil || fmt.Sprint(segs) != fmt.Sprint([]readmeSegment{{onBuilder, "a\n"}, {onClient, "b\n"}, {onBuilder, "c && d\n"}}) {
		t.Errorf("segments: %q, %v", segs, err)
	}
	if _, err := readmeSegments("# on the moon\nx\n", onBuilder); err == nil {
		t.Error("an unknown place was accepted")
	}
	steps, err := shellSteps("x=1 # set\ncat > f <<'EOF' && echo ok\n$x\nEOF\nsystemctl --user enable --now nixgate && loginctl enable-linger \"$USER\"\n")
	if want := []string{"x=1", "cat >f <<'EOF'\n$x\nEOF", "echo ok", "systemctl --user enable --now nixgate", `loginctl enable-linger "$USER"`}; err != nil || fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("steps %q, %v; want %q", steps, err, want)
	}
}
