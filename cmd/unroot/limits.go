package main

import (
	"fmt"

	flag "github.com/spf13/pflag"

	"github.com/unroot/unroot/cgroupv2"
)

// limitFlags are Docker's resource-limit flags, parsed into cgroupv2.Limits.
type limitFlags struct {
	memory, memorySwap, memoryReservation, cpus string
	cpuShares                                   uint64
	cpusetCpus                                  string
	pidsLimit                                   int64
	readBps, writeBps, readIOps, writeIOps      []string
	oomScoreAdj                                 int
}

func addLimitFlags(fs *flag.FlagSet) *limitFlags {
	l := &limitFlags{}
	fs.StringVarP(&l.memory, "memory", "m", "", "memory limit (e.g. 200M, 1g)")
	fs.StringVar(&l.memorySwap, "memory-swap", "", "memory plus swap limit; -1 for unlimited swap")
	fs.StringVar(&l.memoryReservation, "memory-reservation", "", "memory soft limit (memory.low)")
	fs.StringVar(&l.cpus, "cpus", "", "number of CPUs (e.g. 0.5)")
	fs.Uint64VarP(&l.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight, 1024 = default)")
	fs.StringVar(&l.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fs.Int64Var(&l.pidsLimit, "pids-limit", 0, "tune the container's pids limit (-1 for unlimited)")
	fs.StringArrayVar(&l.readBps, "device-read-bps", nil, "limit read rate from a device (/dev/sda:30MB)")
	fs.StringArrayVar(&l.writeBps, "device-write-bps", nil, "limit write rate to a device (/dev/sda:30MB)")
	fs.StringArrayVar(&l.readIOps, "device-read-iops", nil, "limit read rate (IO per second) from a device (/dev/sda:1000)")
	fs.StringArrayVar(&l.writeIOps, "device-write-iops", nil, "limit write rate (IO per second) to a device (/dev/sda:1000)")
	fs.IntVar(&l.oomScoreAdj, "oom-score-adj", 0, "tune the host's OOM preferences (-1000 to 1000)")
	return l
}

func (f *limitFlags) parse(fs *flag.FlagSet) (cgroupv2.Limits, error) {
	var l cgroupv2.Limits
	var err error
	if f.memory != "" {
		if l.Memory, err = cgroupv2.ParseSize(f.memory); err != nil {
			return l, fmt.Errorf("--memory: %w", err)
		}
	}
	if f.memorySwap != "" {
		if l.MemorySwap, err = cgroupv2.ParseMemorySwap(f.memorySwap); err != nil {
			return l, fmt.Errorf("--memory-swap: %w", err)
		}
	}
	if f.memoryReservation != "" {
		if l.MemoryReservation, err = cgroupv2.ParseSize(f.memoryReservation); err != nil {
			return l, fmt.Errorf("--memory-reservation: %w", err)
		}
	}
	if f.cpus != "" {
		if l.NanoCPUs, err = cgroupv2.ParseCPUs(f.cpus); err != nil {
			return l, fmt.Errorf("--cpus: %w", err)
		}
	}
	l.CPUShares = f.cpuShares
	l.CpusetCpus = f.cpusetCpus
	l.PidsLimit = f.pidsLimit
	for _, d := range []struct {
		flag string
		in   []string
		out  *[]cgroupv2.ThrottleDevice
		iops bool
	}{
		{"--device-read-bps", f.readBps, &l.DeviceReadBps, false},
		{"--device-write-bps", f.writeBps, &l.DeviceWriteBps, false},
		{"--device-read-iops", f.readIOps, &l.DeviceReadIOps, true},
		{"--device-write-iops", f.writeIOps, &l.DeviceWriteIOps, true},
	} {
		for _, v := range d.in {
			var td cgroupv2.ThrottleDevice
			if d.iops {
				td, err = cgroupv2.ParseThrottleIOps(v)
			} else {
				td, err = cgroupv2.ParseThrottleBps(v)
			}
			if err != nil {
				return l, fmt.Errorf("%s: %w", d.flag, err)
			}
			*d.out = append(*d.out, td)
		}
	}
	if fs.Changed("oom-score-adj") {
		if f.oomScoreAdj < -1000 || f.oomScoreAdj > 1000 {
			return l, fmt.Errorf("--oom-score-adj must be between -1000 and 1000")
		}
		l.OOMScoreAdj = f.oomScoreAdj
	}
	return l, l.Validate()
}
