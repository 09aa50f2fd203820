// Command gobench is the Go baseline for Sluice's bench/run: the same
// workloads as chan_bench.c, written with goroutines and channels, printing
// the same "RESULT <name> <value> <unit>" lines. Standard library only.
//
// Usage: gobench pingpong|spsc|mpmc|spawn_ff|spawn_result|parked
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const chanCap = 1024

// count mirrors bench_count() in bench_util.c: env override, then BENCH_SCALE.
func count(name string, def int) int {
	n := def
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		n = v
	}
	if s, err := strconv.ParseFloat(os.Getenv("BENCH_SCALE"), 64); err == nil && s > 0 {
		n = int(float64(n) * s)
	}
	if n < 1 {
		n = 1
	}
	return n
}

func result(name string, value float64, unit string) {
	fmt.Printf("RESULT %s %.3f %s\n", name, value, unit)
}

func info(format string, args ...interface{}) {
	fmt.Printf("INFO "+format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gobench: "+format+"\n", args...)
	os.Exit(2)
}

// rssBytes reads the resident set size from /proc/self/statm, as C does.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return -1
	}
	return resident * int64(os.Getpagesize())
}

// pingpong: the main goroutine and one other bounce a value over two
// unbuffered channels.
func pingpong() {
	n := count("BENCH_PINGPONG_N", 1000000)
	warm := 10000
	a, b := make(chan uintptr), make(chan uintptr)
	go func() {
		for i := 0; i < warm+n; i++ {
			b <- <-a
		}
	}()
	for i := 0; i < warm; i++ {
		a <- uintptr(i + 1)
		<-b
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a <- uintptr(i + 1)
		if <-b != uintptr(i+1) {
			fail("value lost")
		}
	}
	dt := time.Since(t0)
	info("go ping-pong: %d round trips, GOMAXPROCS=%d", n, runtime.GOMAXPROCS(0))
	result("pingpong_rt", float64(dt.Nanoseconds())/float64(n), "ns")
}

// prodcons: producers put n values in all on one buffered channel; the last
// producer to finish closes it; consumers drain it and sum.
func prodcons(name string, producers, consumers, n int) {
	ch := make(chan uintptr, chanCap)
	var left int32 = int32(producers)
	var sum, taken uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(producers + consumers)
	for k := 0; k < producers; k++ {
		lo, hi := n*k/producers, n*(k+1)/producers
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				ch <- uintptr(i + 1)
			}
			if atomic.AddInt32(&left, -1) == 0 {
				close(ch)
			}
		}()
	}
	for k := 0; k < consumers; k++ {
		go func() {
			defer wg.Done()
			var s, t uint64
			for v := range ch {
				s += uint64(v)
				t++
			}
			atomic.AddUint64(&sum, s)
			atomic.AddUint64(&taken, t)
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	if taken != uint64(n) || sum != uint64(n)*uint64(n+1)/2 {
		fail("took %d of %d, sum mismatch", taken, n)
	}
	info("go chan(%d) %dP/%dC: %d values", chanCap, producers, consumers, n)
	result(name, float64(n)/dt.Seconds()/1e6, "Mvals/s")
}

// spawnFF: n fire-and-forget goroutines, completion tracked by a WaitGroup.
func spawnFF() {
	n := count("BENCH_SPAWN_N", 1000000)
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	dt := time.Since(t0)
	info("go spawn fire-and-forget: %d goroutines", n)
	result("spawn_ff", float64(dt.Nanoseconds())/float64(n), "ns")
}

// spawnResult: each goroutine gets its own result channel (the analogue of
// sl_go's promise), with at most 1024 outstanding before the oldest is taken.
func spawnResult() {
	n := count("BENCH_SPAWN_N", 1000000)
	const window = 1024
	var ring [window]chan uintptr
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if i >= window {
			<-ring[i%window]
		}
		c := make(chan uintptr, 1)
		go func() { c <- 0 }()
		ring[i%window] = c
	}
	for i := n - window; i < n; i++ {
		if i >= 0 {
			<-ring[i%window]
		}
	}
	dt := time.Since(t0)
	info("go spawn with result channel: %d goroutines", n)
	result("spawn_result", float64(dt.Nanoseconds())/float64(n), "ns")
}

// parked: n goroutines parked on one channel; resident memory per goroutine.
func parked() {
	n := count("BENCH_PARKED_N", 100000)
	ch := make(chan uintptr)
	var started, finished sync.WaitGroup
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	rss0 := rssBytes()
	started.Add(n)
	finished.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-ch
			finished.Done()
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the last ones reach the receive
	rss1 := rssBytes()
	runtime.ReadMemStats(&ms1)
	close(ch)
	finished.Wait()
	delta := rss1 - rss0
	info("go parked: %d goroutines, RSS delta %d B, runtime Sys delta %d B, StackInuse delta %d B",
		n, delta, int64(ms1.Sys)-int64(ms0.Sys), int64(ms1.StackInuse)-int64(ms0.StackInuse))
	result("parked_mem", float64(delta)/float64(n)/1024, "KiB")
	result("parked_total", float64(delta)/(1024*1024), "MiB")
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}
	w := ""
	if len(os.Args) > 1 {
		w = os.Args[1]
	}
	switch w {
	case "pingpong":
		pingpong()
	case "spsc":
		prodcons("spsc_rate", 1, 1, count("BENCH_SPSC_N", 5000000))
	case "mpmc":
		prodcons("mpmc_rate", 4, 4, count("BENCH_MPMC_N", 4000000))
	case "spawn_ff":
		spawnFF()
	case "spawn_result":
		spawnResult()
	case "parked":
		parked()
	default:
		fmt.Fprintf(os.Stderr, "usage: %s pingpong|spsc|mpmc|spawn_ff|spawn_result|parked\n", os.Args[0])
		os.Exit(2)
	}
}
