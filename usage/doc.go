// Package usage keeps what each key used of the builder — sessions,
// builds, build time, bytes, imported paths, refusals — across restarts,
// in a small bbolt store in the state directory, counted by the hour so
// that a report can start at any hour.
//
// bbolt lets one process write at a time (an exclusive flock). Both modes
// therefore open the store, add one session and close it again, so the
// lock is held for milliseconds: serve mode, the exec-mode processes of
// the same builder and nixgate usage (a shared flock) take turns, each
// waiting a bounded time. Accounting never refuses a session: a store
// that cannot be opened is logged and the session goes on uncounted.
//
// In exec mode the build account can write the store, and bbolt trusts
// its file: damaged pages make it panic, recurse until the stack
// overflows or allocate without end. Exec mode and nixgate usage
// therefore open it in a process of their own (AddIn, SumsIn), bounded
// in time and address space; a damaged store is reported with its fix
// (move it aside), and costs the session nothing but its counting.
package usage
