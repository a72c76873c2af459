package upstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// validation is the abuse-protection state of one validation URL (§9).
type validation struct {
	mu       sync.Mutex
	url      string // OPTIONS target: the template with {event}=validate
	template string // the handler's URL template
	logURL   string
	hub      string
	valid    bool      // last result
	checked  bool      // a result exists
	expires  time.Time // valid: revalidate after this
	retryAt  time.Time // invalid: try again after this
	backoff  time.Duration
	reason   string        // why the last validation failed
	running  chan struct{} // non-nil while a validation request runs
}

func (c *Client) validationFor(t *target, hub string) *validation {
	c.validMu.Lock()
	v := c.validations[t.validateURL]
	if v == nil {
		v = &validation{url: t.validateURL, template: t.h.template, logURL: redactURL(t.validateURL), hub: hub}
		c.validations[t.validateURL] = v
	}
	c.validMu.Unlock()
	return v
}

// RetainValidations forgets the abuse-protection results (§9) of every handler URL
// template that none of hubs has, after a configuration reload: a changed URL is
// validated again before its first event, an unchanged one keeps its result. Safe
// for concurrent use.
func (c *Client) RetainValidations(hubs ...*Hub) {
	keep := make(map[string]bool)
	for _, hb := range hubs {
		if hb == nil {
			continue
		}
		for _, h := range hb.handlers {
			keep[h.template] = true
		}
	}
	c.validMu.Lock()
	for u, v := range c.validations {
		if !keep[v.template] {
			delete(c.validations, u)
		}
	}
	c.validMu.Unlock()
}

// validate returns nil when events may go to t (§9.4): validated and fresh, or
// validated and stale (revalidated in the background meanwhile). Otherwise it
// validates now on this worker, or waits for the validation another worker runs,
// or fails with ErrNotValidated while a failed URL is in back-off.
func (c *Client) validate(t *target, s *Session) error {
	v := c.validationFor(t, s.hub)
	v.mu.Lock()
	for {
		now := c.now()
		switch {
		case v.checked && v.valid:
			if !now.Before(v.expires) && v.running == nil {
				v.running = make(chan struct{})
				go c.runValidation(v)
			}
			v.mu.Unlock()
			return nil
		case v.checked && now.Before(v.retryAt):
			err := fmt.Errorf("%w: %s (%s); retried in %v", ErrNotValidated, v.logURL, v.reason, v.retryAt.Sub(now).Round(time.Second))
			v.mu.Unlock()
			return err
		case v.running != nil:
			ch := v.running
			v.mu.Unlock()
			select {
			case <-ch:
			case <-c.closeCh:
				return ErrClosed
			}
			v.mu.Lock()
			if !v.valid { // just failed (or is still failing): do not loop into a new attempt
				err := fmt.Errorf("%w: %s (%s)", ErrNotValidated, v.logURL, v.reason)
				v.mu.Unlock()
				return err
			}
		default:
			v.running = make(chan struct{})
			v.mu.Unlock()
			c.runValidation(v)
			v.mu.Lock()
		}
	}
}

// runValidation sends the validation request and records its result. The
// caller has set v.running.
func (c *Client) runValidation(v *validation) {
	ok, reason := c.validateOnce(v.url)
	now := c.now()
	v.mu.Lock()
	v.checked = true
	v.valid = ok
	if ok {
		v.expires = now.Add(c.cfg.ValidationSuccessCache)
		v.backoff = 0
		v.reason = ""
	} else {
		// §9.4: back-off 1, 2, 4 … 60 s.
		if v.backoff == 0 {
			v.backoff = time.Second
		} else if v.backoff *= 2; v.backoff > validationMaxBackoff {
			v.backoff = validationMaxBackoff
		}
		v.retryAt = now.Add(v.backoff)
		v.reason = reason
	}
	backoff := v.backoff
	close(v.running)
	v.running = nil
	v.mu.Unlock()
	if ok {
		c.log.LogAttrs(context.Background(), slog.LevelDebug, "upstream: event handler validated", slog.String("hub", v.hub), slog.String("url", v.logURL))
		return
	}
	c.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream: event handler failed abuse-protection validation (OPTIONS with WebHook-Request-Origin); events to it fail until it passes",
		slog.String("hub", v.hub), slog.String("url", v.logURL), slog.String("reason", reason),
		slog.String("requestOrigin", c.cfg.RequestOrigin), slog.Duration("retryIn", backoff))
}

// validateOnce sends OPTIONS (then GET on 404) and applies the §9.2 rule.
func (c *Client) validateOnce(url string) (bool, string) {
	status, allowed, err := c.validationRequest(fasthttp.MethodOptions, url)
	if err == nil && status == fasthttp.StatusNotFound {
		status, allowed, err = c.validationRequest(fasthttp.MethodGet, url)
	}
	return c.validationResult(status, allowed, err)
}

// validationResult applies the §9.2 rule to a validation answer.
func (c *Client) validationResult(status int, allowed [][]byte, err error) (bool, string) {
	switch {
	case err != nil:
		return false, err.Error()
	case status < 200 || status > 299:
		return false, fmt.Sprintf("status %d", status)
	}
	if !c.originAllowed(allowed) {
		if len(allowed) == 0 {
			return false, "no WebHook-Allowed-Origin header"
		}
		return false, fmt.Sprintf("WebHook-Allowed-Origin %q does not allow %q", truncate(bytes.Join(allowed, []byte(", ")), 200), c.cfg.RequestOrigin)
	}
	return true, ""
}

func (c *Client) validationRequest(method, url string) (int, [][]byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.DisableNormalizing()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Add("WebHook-Request-Origin", c.cfg.RequestOrigin)
	req.Header.Add("ce-awpsversion", "1.0")
	start := time.Now()
	err := c.http.DoTimeout(req, resp, c.cfg.ValidationTimeout)
	var allowed [][]byte
	status := 0
	if err != nil {
		err = classifyError(err).err
	} else {
		status = resp.StatusCode()
		for _, v := range resp.Header.PeekAll("WebHook-Allowed-Origin") {
			allowed = append(allowed, append([]byte(nil), v...))
		}
	}
	if c.cfg.OnAttempt != nil {
		a := Attempt{Event: "validate", Outcome: OutcomeFailed, Duration: time.Since(start)}
		switch {
		case err == nil && status == fasthttp.StatusNotFound && method == fasthttp.MethodOptions:
			// Not an outcome yet: the GET that follows decides (§9.1).
			a.Outcome = OutcomeRetried
		case err == nil && status >= 400 && status < 500:
			a.Outcome = OutcomeRejected
		case err == nil && status >= 200 && status < 300:
			if ok, _ := c.validationResult(status, allowed, nil); ok {
				a.Outcome = OutcomeSuccess
			} else {
				a.Outcome = OutcomeRejected
			}
		}
		c.cfg.OnAttempt(a)
	}
	return status, allowed, err
}

// originAllowed applies §9.2: some comma-separated, trimmed value is "*" or
// equals (ASCII case-insensitively) the request origin or the public host:port.
func (c *Client) originAllowed(values [][]byte) bool {
	hostPort := c.currentPublicHostPort()
	for _, line := range values {
		for _, part := range bytes.Split(line, []byte(",")) {
			part = bytes.TrimSpace(part)
			switch {
			case bytes.Equal(part, []byte("*")),
				bytes.EqualFold(part, []byte(c.cfg.RequestOrigin)),
				hostPort != "" && bytes.EqualFold(part, []byte(hostPort)):
				return true
			}
		}
	}
	return false
}
