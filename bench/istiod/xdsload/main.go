// Command mb-xdsload simulates many Istio proxies (sidecars, waypoints, ztunnels) as
// delta-ADS xDS clients of a real istiod, all streams in one process, and records what
// istiod pushes to each of them: bytes, resources per type, the time of every response.
//
// Usage:
//
//	mb-xdsload --addr 127.0.0.1:15010 --proxies proxies.json --events events.jsonl \
//	    [--streams-per-conn 20] [--lds-after-cds]
//
// It is driven by JSON-line commands on stdin, one JSON-line reply each on stdout
// (see app.go); logs go to stderr. Every response is ACKed (never NACKed) and written as
// one line to the events file (see events.go).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout))
}

func run(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet("mb-xdsload", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:15010", "istiod's plaintext xDS address (host:port)")
	proxiesPath := fs.String("proxies", "", "JSON array of proxies: {id, role, cluster, metadata, keep}")
	eventsPath := fs.String("events", "", "events file to write (JSON lines, truncated at start)")
	fs.IntVar(&cfg.streamsPerConn, "streams-per-conn", 20, "ADS streams sharing one gRPC connection")
	fs.BoolVar(&cfg.ldsAfterCDS, "lds-after-cds", false,
		"subscribe LDS only once CDS and the EDS it led to are answered (Envoy's start-up order); "+
			"default: CDS and LDS at once")
	maxRecvMiB := fs.Int("max-recv-mib", 512, "largest response accepted, MiB")
	fs.IntVar(&cfg.initialWindow, "initial-window", 0,
		"HTTP/2 stream window in bytes (0: gRPC's default, dynamic BDP-based windows)")
	fs.IntVar(&cfg.initialConnWindow, "initial-conn-window", 0,
		"HTTP/2 connection window in bytes (0: gRPC's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file at close")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *proxiesPath == "" || *eventsPath == "" {
		fmt.Fprintln(os.Stderr, "mb-xdsload: --proxies and --events are required")
		return 2
	}
	if cfg.streamsPerConn < 1 {
		fmt.Fprintln(os.Stderr, "mb-xdsload: --streams-per-conn must be >= 1")
		return 2
	}
	cfg.maxRecvBytes = *maxRecvMiB << 20
	log.SetOutput(os.Stderr)
	log.SetPrefix("mb-xdsload: ")
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	specs, err := loadProxies(*proxiesPath)
	if err != nil {
		log.Printf("%v", err)
		return 2
	}
	ev, err := openEvents(*eventsPath)
	if err != nil {
		log.Printf("%v", err)
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Printf("cpuprofile: %v", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				err = pprof.WriteHeapProfile(f)
				f.Close()
			}
			if err != nil {
				log.Printf("memprofile: %v", err)
			}
		}()
	}
	a := newApp(cfg, specs, ev)
	log.Printf("%d proxies, events to %s, istiod at %s", len(specs), *eventsPath, cfg.addr)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Printf("%v: flushing events and exiting", s)
		pprof.StopCPUProfile()
		if err := ev.Flush(); err != nil {
			log.Printf("flush events: %v", err)
		}
		os.Exit(0)
	}()

	out := bufio.NewWriter(stdout)
	in := bufio.NewReaderSize(stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(trimSpace(line)) > 0 {
			reply, exit := a.handle(line)
			b, merr := json.Marshal(reply)
			if merr != nil {
				b = []byte(`{"ok":false,"error":"internal: reply not encodable"}`)
			}
			out.Write(b)
			out.WriteByte('\n')
			if ferr := out.Flush(); ferr != nil {
				log.Printf("stdout: %v: closing", ferr)
				a.shutdown(5 * time.Second)
				return 1
			}
			if exit {
				return 0
			}
		}
		if err != nil {
			if err != io.EOF {
				log.Printf("stdin: %v", err)
			}
			log.Printf("stdin closed: closing all streams")
			a.shutdown(5 * time.Second)
			return 0
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// config holds the command-line settings that the streams need.
type config struct {
	addr              string
	streamsPerConn    int
	ldsAfterCDS       bool
	maxRecvBytes      int
	initialWindow     int
	initialConnWindow int
}

// rootContext is separate so tests can use their own.
func rootContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
