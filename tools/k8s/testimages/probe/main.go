// Command lf-probe is the cluster tests' workload and client, one static binary:
//
//	lf-probe serve [ADDR]      answer HTTP on ADDR (default :8080): "/" says "lf-probe <hostname>",
//	                           "/burn?ms=N" spins a CPU for N milliseconds
//	lf-probe resolve NAME      print NAME's addresses (the pod's resolver, /etc/resolv.conf)
//	lf-probe get URL [SECONDS] print URL's body; exit 1 on an error or a non-200 answer
//	lf-probe dial HOST:PORT    open a TCP connection (within 5 s) and close it; exit 1 when that fails
//	lf-probe write FILE TEXT   write TEXT to FILE (a volume check)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: lf-probe serve [ADDR] | resolve NAME | get URL [SECONDS] | dial HOST:PORT | write FILE TEXT")
	}
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		serve(addr)
	case "resolve":
		if len(os.Args) != 3 {
			fail("usage: lf-probe resolve NAME")
		}
		resolve(os.Args[2])
	case "get":
		if len(os.Args) < 3 {
			fail("usage: lf-probe get URL [SECONDS]")
		}
		seconds := 5.0
		if len(os.Args) > 3 {
			parsed, err := strconv.ParseFloat(os.Args[3], 64)
			if err != nil {
				fail("lf-probe get: SECONDS is not a number: " + os.Args[3])
			}
			seconds = parsed
		}
		get(os.Args[2], time.Duration(seconds*float64(time.Second)))
	case "dial":
		if len(os.Args) != 3 {
			fail("usage: lf-probe dial HOST:PORT")
		}
		conn, err := net.DialTimeout("tcp", os.Args[2], 5*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("connected to %s\n", conn.RemoteAddr())
		_ = conn.Close()
	case "write":
		if len(os.Args) != 4 {
			fail("usage: lf-probe write FILE TEXT")
		}
		if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fail("lf-probe: unknown command " + os.Args[1])
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(2)
}

func serve(addr string) {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "lf-probe %s\n", host)
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			http.Error(w, "ms must be a non-negative integer", http.StatusBadRequest)
			return
		}
		until := time.Now().Add(time.Duration(ms) * time.Millisecond)
		n := 0
		for time.Now().Before(until) {
			n++
		}
		fmt.Fprintf(w, "burnt %d ms (%d loops)\n", ms, n)
	})
	server := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, "lf-probe serving on %s\n", addr)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func resolve(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(addrs, "\n"))
}

func get(url string, timeout time.Duration) {
	client := &http.Client{Timeout: timeout}
	response, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	os.Stdout.Write(body)
	if response.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "HTTP %d\n", response.StatusCode)
		os.Exit(1)
	}
}
