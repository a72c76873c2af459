package bench

import (
	"fmt"
	"io"
	"time"
)

// startProgress writes status() to w once a second until stop is called. A nil w means no
// progress; stop then does nothing. stop waits for the writer goroutine to end.
func startProgress(w io.Writer, name string, status func() string) (stop func()) {
	if w == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				fmt.Fprintf(w, "bench %s %4.0fs  %s\n", name, now.Sub(start).Seconds(), status())
			}
		}
	}()
	return func() { close(quit); <-done }
}
