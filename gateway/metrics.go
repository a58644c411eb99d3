package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nixgate/nixgate/usage"
)

// Metrics are the gateway's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	reg         *prometheus.Registry
	connections *prometheus.CounterVec
	auths       *prometheus.CounterVec
	sessions    *prometheus.CounterVec
	runningG    prometheus.Gauge
	bytesC      *prometheus.CounterVec
	ops         *prometheus.CounterVec
	drainingG   prometheus.Gauge
	healthyG    prometheus.Gauge
	buildsG     prometheus.Gauge
	queueG      prometheus.Gauge
	slotWait    prometheus.Histogram
	keepalives  prometheus.Counter

	usageSessions *prometheus.CounterVec
	usageBuilds   *prometheus.CounterVec
	usageBuildSec *prometheus.CounterVec
	usageBytes    *prometheus.CounterVec
	usageImported *prometheus.CounterVec
	usageRefusals *prometheus.CounterVec
}

// NewMetrics returns Metrics in a registry of their own, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_connections_total", Help: "TCP connections, by what became of them before authentication.",
		}, []string{"result"}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_auth_total", Help: "Public key checks, accepted or refused.",
		}, []string{"result"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_sessions_total", Help: "Exec and shell requests, by decision.",
		}, []string{"decision"}),
		runningG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixgate_sessions_running", Help: "Nix commands running now.",
		}),
		bytesC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_session_bytes_total", Help: "Bytes to (in) and from (out) the Nix commands.",
		}, []string{"direction"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_ops_total", Help: "Nix protocol operations, by key, operation and decision (allow or deny).",
		}, []string{"key", "op", "decision"}),
		drainingG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixgate_draining", Help: "1 while the builder is draining (nixgate drain): new sessions are refused.",
		}),
		healthyG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixgate_healthy", Help: "1 while Nix on the builder works (store writable, free space above min_free, daemon answering); 0 while new Nix sessions are refused for it.",
		}),
		buildsG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixgate_builds_running", Help: "Build operations holding a build slot now ([admission] max_builds).",
		}),
		queueG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nixgate_build_queue_depth", Help: "Build operations waiting for a build slot now.",
		}),
		slotWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nixgate_build_slot_wait_seconds", Help: "How long build operations waited for a build slot, refused ones included.",
			Buckets: []float64{0.001, 0.01, 0.1, 1, 5, 15, 60, 300, 900, 3600},
		}),
		keepalives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nixgate_keepalive_timeouts_total", Help: "Connections closed because their client answered no keepalive ([limits] keepalive_count_max in a row).",
		}),
		usageSessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_sessions_total", Help: "Nix sessions run, by key.",
		}, []string{"key"}),
		usageBuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_builds_total", Help: "Build operations that asked for something to be built, by key.",
		}, []string{"key"}),
		usageBuildSec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_build_seconds_total", Help: "Seconds spent in build operations (each until the client's next operation), by key.",
		}, []string{"key"}),
		usageBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_bytes_total", Help: "Bytes to (in) and from (out, stderr included) Nix, by key.",
		}, []string{"key", "direction"}),
		usageImported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_paths_imported_total", Help: "Store paths added to the store, by key.",
		}, []string{"key"}),
		usageRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixgate_usage_refusals_total", Help: "Sessions and protocol operations refused, by key.",
		}, []string{"key"}),
	}
	m.reg.MustRegister(m.connections, m.auths, m.sessions, m.runningG, m.bytesC, m.ops, m.drainingG, m.healthyG, m.buildsG, m.queueG, m.slotWait, m.keepalives,
		m.usageSessions, m.usageBuilds, m.usageBuildSec, m.usageBytes, m.usageImported, m.usageRefusals,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) connection(result string) {
	if m != nil {
		m.connections.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) keepaliveClosed() {
	if m != nil {
		m.keepalives.Inc()
	}
}

func (m *Metrics) auth(result string) {
	if m != nil {
		m.auths.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) session(decision string) {
	if m != nil {
		m.sessions.WithLabelValues(decision).Inc()
	}
}

func (m *Metrics) running(n int) {
	if m != nil {
		m.runningG.Set(float64(n))
	}
}

func (m *Metrics) bytes(in, out int64) {
	if m != nil {
		m.bytesC.WithLabelValues("in").Add(float64(in))
		m.bytesC.WithLabelValues("out").Add(float64(out))
	}
}

func (m *Metrics) op(key, op string, allowed bool) {
	if m != nil {
		decision := "deny"
		if allowed {
			decision = "allow"
		}
		m.ops.WithLabelValues(key, op, decision).Inc()
	}
}

func (m *Metrics) draining(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.drainingG.Set(v)
	}
}

func (m *Metrics) healthy(ok bool) {
	if m != nil {
		v := 0.0
		if ok {
			v = 1
		}
		m.healthyG.Set(v)
	}
}

func (m *Metrics) buildSlots(running, waiting int) {
	if m != nil {
		m.buildsG.Set(float64(running))
		m.queueG.Set(float64(waiting))
	}
}

func (m *Metrics) slotWaited(d time.Duration) {
	if m != nil {
		m.slotWait.Observe(d.Seconds())
	}
}

// usage adds one session's (or refusal's) counters to key's.
func (m *Metrics) usage(key string, c usage.Counters) {
	if m == nil {
		return
	}
	m.usageSessions.WithLabelValues(key).Add(float64(c.Sessions))
	m.usageBuilds.WithLabelValues(key).Add(float64(c.Builds))
	m.usageBuildSec.WithLabelValues(key).Add(c.BuildSeconds)
	m.usageBytes.WithLabelValues(key, "in").Add(float64(c.BytesIn))
	m.usageBytes.WithLabelValues(key, "out").Add(float64(c.BytesOut))
	m.usageImported.WithLabelValues(key).Add(float64(c.PathsImported))
	m.usageRefusals.WithLabelValues(key).Add(float64(c.Refusals))
}
