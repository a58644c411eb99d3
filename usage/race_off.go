//go:build !race

package usage

// raceBuild is set in a binary built with the race detector, whose
// shadow memory needs far more address space than childMemory.
const raceBuild = false
