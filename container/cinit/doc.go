// Package cinit is the container's init: PID 1 of the container, it
// finishes the root filesystem (proc, dev, sys, cgroup), pivots into it,
// drops privileges, starts the user's process and reaps until it exits.
// It depends on nothing heavy, so that it can be built into the small
// unroot-init binary that starts in a few milliseconds (see container/initbin).
package cinit
