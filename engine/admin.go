package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminServer is the admin listener (operations.md §2): a few operator and
// Prometheus connections, so it is plain net/http on its own goroutines, apart from
// the event loops.
type adminServer struct {
	mu   sync.Mutex
	srv  *http.Server
	addr *net.TCPAddr
	done chan struct{} // closed when Serve returns
}

// startAdmin listens on Admin.Address (when set) and serves in the background.
func (s *Server) startAdmin() error {
	if s.cfg.Admin.Address == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Admin.Address)
	if err != nil {
		return fmt.Errorf("engine: admin listener on %s: %w", s.cfg.Admin.Address, err)
	}
	srv := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	a := &s.admin
	a.mu.Lock()
	a.srv, a.addr, a.done = srv, ln.Addr().(*net.TCPAddr), make(chan struct{})
	done := a.done
	a.mu.Unlock()
	s.log.Info("admin listener started", "address", ln.Addr().String(), "pprof", s.cfg.Admin.Pprof)
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// stopAdmin closes the admin listener and waits (bounded by ctx) for requests in
// flight, such as a scrape, to finish.
func (s *Server) stopAdmin(ctx context.Context) {
	a := &s.admin
	a.mu.Lock()
	srv, done := a.srv, a.done
	a.srv = nil
	a.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
	<-done
}

// AdminAddr is the bound address of the admin listener; nil when Admin.Address is
// empty or before Start.
func (s *Server) AdminAddr() *net.TCPAddr {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	return s.admin.addr
}

// ready reports whether the server takes new work: the public port is up and no
// drain has started.
func (s *Server) ready() bool {
	select {
	case <-s.started:
		return !s.draining.Load()
	default:
		return false
	}
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	text := func(w http.ResponseWriter, status int, body string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		text(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.ready():
			text(w, http.StatusOK, "ok\n")
		case s.draining.Load():
			text(w, http.StatusServiceUnavailable, "draining\n")
		default:
			text(w, http.StatusServiceUnavailable, "starting\n")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true, // when the Accept header asks for it; text 0.0.4 otherwise
		ErrorHandling:     promhttp.ContinueOnError,
	}))
	if s.cfg.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
