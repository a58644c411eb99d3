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
package usage
