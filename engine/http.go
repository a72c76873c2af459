package engine

import (
	"bufio"
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"
)

var headEnd = []byte("\r\n\r\n")

// onHTTP handles the bytes of a connection that has not been upgraded: it waits for
// a whole request head (never parsing a partial one), then routes it to the
// WebSocket handshake or to the REST API.
func (c *conn) onHTTP() {
	buf, _ := c.gc.Peek(-1)
	if len(buf) == 0 {
		return
	}
	maxHead := c.srv.cfg.Limits.MaxHeaderBytes
	end := bytes.Index(buf, headEnd)
	if end < 0 || end+len(headEnd) > maxHead {
		if end >= 0 || len(buf) > maxHead {
			if sup, ok := c.srv.warnAllowed(warnHead); ok {
				c.srv.log.Warn("http: request head too large", "status", 431, "remote", c.remote(), "limitBytes", maxHead, sup)
			}
			c.replyError(431, "Error.RequestHeaderFieldsTooLarge", "request head exceeds "+strconv.Itoa(maxHead)+" bytes", true)
		}
		return
	}
	headLen := end + len(headEnd)
	var h fasthttp.RequestHeader
	br := c.srv.readers.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(buf[:headLen]))
	err := h.Read(br)
	br.Reset(nil)
	c.srv.readers.Put(br)
	if err != nil {
		if sup, ok := c.srv.warnAllowed(warnHead); ok {
			c.srv.log.Warn("http: malformed request head", "status", 400, "remote", c.remote(), "err", parseErrorText(err), sup)
		}
		c.replyError(400, "Error.BadRequest", "malformed HTTP request", true)
		return
	}
	rawURI := string(h.RequestURI())
	path, query, _ := strings.Cut(rawURI, "?")
	if bp := c.srv.cfg.BasePath; bp != "" {
		if path != bp && !strings.HasPrefix(path, bp+"/") {
			c.notFound(&h, headLen, path)
			return
		}
		path = path[len(bp):]
	}
	switch {
	case path == "/client" || strings.HasPrefix(path, "/client/"):
		head := make([]byte, headLen) // the handshake keeps nothing of it; copy keeps Peek rules simple
		copy(head, buf[:headLen])
		_, _ = c.gc.Discard(headLen)
		c.handshake(head, &h, path, query)
		if c.state == stateWS && c.gc.InboundBuffered() > 0 {
			c.onFrames()
		}
	case isHealthRoute(path) && (h.IsGet() || h.IsHead()) && bodiless(&h):
		c.health(&h, headLen)
	case path == "/api" || strings.HasPrefix(path, "/api/"):
		c.startREST(buf, headLen, &h)
	default:
		c.notFound(&h, headLen, path)
	}
}

func (c *conn) remote() string {
	if a := c.gc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

func (c *conn) notFound(h *fasthttp.RequestHeader, headLen int, path string) {
	c.debug("http: unknown route", "method", string(h.Method()), "path", path)
	cl := h.ContentLength()
	if cl < 0 || cl > c.srv.settings().cfg.Limits.MaxMessageBytes {
		c.srv.metrics.restDone(opUnknown, 404, 0)
		c.replyError(404, "Error.NotFound", "no route for "+path, true)
		return
	}
	if c.gc.InboundBuffered() < headLen+cl {
		return // wait for the body so the stream stays in sync
	}
	_, _ = c.gc.Discard(headLen + cl)
	c.lastRead = c.srv.now().UnixNano() // a whole request arrived: the idle clock restarts
	c.srv.metrics.restDone(opUnknown, 404, 0)
	c.replyError(404, "Error.NotFound", "no route for "+path, h.ConnectionClose())
}

// health answers a bodiless GET or HEAD /api/health on the loop (rest-api.md §3.1):
// a balancer's probe must not queue behind REST work on the worker pool, and its 503
// must show within 100 ms of a drain's start (operations.md §2), however busy the
// pool is. Other methods and requests with a body take the pool's path (Server.health).
func (c *conn) health(h *fasthttp.RequestHeader, headLen int) {
	_, _ = c.gc.Discard(headLen)
	c.lastRead = c.srv.now().UnixNano() // a whole request arrived: the idle clock restarts
	status := c.srv.healthStatus()
	var r fasthttp.Response
	r.SetStatusCode(status)
	r.SkipBody = h.IsHead()
	closeConn := h.ConnectionClose()
	if closeConn {
		r.SetConnectionClose()
	}
	_, _ = c.gc.Write(responseBytes(&r))
	c.srv.metrics.restDone(opHealth, status, 0)
	switch {
	case closeConn:
		c.state = stateClosed
		_ = c.gc.Close()
	case c.gc.InboundBuffered() > 0:
		_ = c.gc.Wake(nil) // a pipelined request waits in the buffer
	}
}

// bodiless reports whether a request head announces no body: fasthttp gives -2 when
// there is neither Content-Length nor Transfer-Encoding, and -1 for chunked.
func bodiless(h *fasthttp.RequestHeader) bool {
	cl := h.ContentLength()
	return cl == 0 || cl == -2
}

// startREST waits for the whole body, copies the request once and hands it to the
// worker pool. The connection reads nothing more until the response is out.
func (c *conn) startREST(buf []byte, headLen int, h *fasthttp.RequestHeader) {
	limit := c.srv.settings().cfg.Limits.MaxMessageBytes
	total := headLen
	switch cl := h.ContentLength(); {
	case cl > limit:
		if sup, ok := c.srv.warnAllowed(warnTooBig); ok {
			c.srv.log.Warn("rest: body too large", "status", 413, "remote", c.remote(), "bytes", cl, "limitBytes", limit, sup)
		}
		c.rejectLargeBody(h, limit)
		return
	case cl > 0:
		total += cl
		if len(buf) < total {
			return // wait for the rest of the body
		}
	case cl == -1: // chunked
		n, ok := chunkedEnd(buf[headLen:])
		if !ok {
			if len(buf)-headLen > limit+limit/8 {
				if sup, ok := c.srv.warnAllowed(warnTooBig); ok {
					c.srv.log.Warn("rest: chunked body too large", "status", 413, "remote", c.remote(), "limitBytes", limit, sup)
				}
				c.rejectLargeBody(h, limit)
			}
			return
		}
		total += n
	}
	req := make([]byte, total)
	copy(req, buf[:total])
	_, _ = c.gc.Discard(total)
	c.state = stateREST
	gc := c.gc
	start := time.Now()
	wg := c.srv.work.add() // a drain waits for it before closing connections (drain.go settle)
	if !c.srv.pool.trySubmit(func() {
		defer wg.Done()
		c.srv.runREST(gc, req, start)
	}) {
		wg.Done()
		c.state = stateHTTP
		c.srv.limited(c.srv.log, warnBusy, slog.LevelWarn, "rest: worker queue full", slog.Int("status", 503))
		c.srv.metrics.restDone(opUnknown, 503, time.Since(start))
		c.replyError(503, "Error.ServiceUnavailable", "server busy, retry later", false)
	}
}

// rejectLargeBody answers a request whose body is over the limit without reading
// it, and closes. The route and token are still checked first, so the answer is
// the one rest-api.md §4's order gives: 404/405, 401, then 413.
func (c *conn) rejectLargeBody(h *fasthttp.RequestHeader, limit int) {
	f := &restFailure{status: 413, code: "Error.PayloadTooLarge", message: "request body exceeds " + strconv.Itoa(limit) + " bytes"}
	escPath, _, _ := strings.Cut(string(h.RequestURI()), "?")
	op := opHealth
	if !c.srv.isHealthPath(escPath) {
		rt, early := c.srv.routeAndAuth(string(h.Method()), escPath, h.Peek("Authorization"))
		if early != nil {
			f = early
		}
		op = rt.metricsOp()
	}
	c.srv.metrics.restDone(op, f.status, 0)
	var r fasthttp.Response
	f.write(&r)
	r.SetConnectionClose()
	_, _ = c.gc.Write(responseBytes(&r))
	c.state = stateClosed
	_ = c.gc.Close()
}

// chunkedEnd reports how many bytes a complete chunked body occupies.
func chunkedEnd(b []byte) (int, bool) {
	i := 0
	for {
		nl := bytes.Index(b[i:], []byte("\r\n"))
		if nl < 0 {
			return 0, false
		}
		line := b[i : i+nl]
		if semi := bytes.IndexByte(line, ';'); semi >= 0 {
			line = line[:semi]
		}
		size, err := strconv.ParseInt(strings.TrimSpace(string(line)), 16, 64)
		if err != nil || size < 0 {
			return len(b), true // malformed: let the parser report it
		}
		i += nl + 2
		if size == 0 {
			for { // optional trailers, then an empty line
				end := bytes.Index(b[i:], []byte("\r\n"))
				if end < 0 {
					return 0, false
				}
				i += end + 2
				if end == 0 {
					return i, true
				}
			}
		}
		if size > int64(len(b)-i)-2 { // written so a huge size cannot overflow
			return 0, false
		}
		i += int(size) + 2
	}
}

var ctxPool = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

// runREST runs on a pool worker: parse the buffered request, call the REST handler,
// write the response through AsyncWrite, then resume reading on the loop. start is
// when the whole request had arrived, for the duration metric.
func (s *Server) runREST(gc gnet.Conn, raw []byte, start time.Time) {
	ctx := ctxPool.Get().(*fasthttp.RequestCtx)
	ctx.Request.Reset()
	ctx.Response.Reset()
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(raw))
	err := ctx.Request.ReadLimitBody(br, s.settings().cfg.Limits.MaxMessageBytes)
	br.Reset(nil)
	s.readers.Put(br)
	closeConn := false
	op := opUnknown
	if err != nil {
		if sup, ok := s.warnAllowed(warnHead); ok {
			s.log.Warn("rest: malformed request", "status", 400, "err", parseErrorText(err), sup)
		}
		setError(ctx, 400, "Error.BadRequest", "malformed HTTP request: "+err.Error())
		closeConn = true
	} else {
		op = s.handleREST(ctx)
		closeConn = ctx.Request.Header.ConnectionClose()
	}
	status := ctx.Response.StatusCode()
	if closeConn {
		ctx.Response.SetConnectionClose()
	}
	if ctx.Request.Header.IsHead() {
		ctx.Response.SkipBody = true
	}
	out := responseBytes(&ctx.Response)
	after, _ := ctx.UserValue(afterResponseKey).(func())
	ctx.ResetUserValues()
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctxPool.Put(ctx)
	if after != nil {
		defer after()
		if hook := s.beforeFanout.Load(); hook != nil {
			defer (*hook)()
		}
	}
	// Counted before the deferred fan-out of a 202 send (defers run last first):
	// accepted, not delivered.
	elapsed := time.Since(start)
	defer s.metrics.restDone(op, status, elapsed)
	_ = gc.AsyncWrite(out, func(gc gnet.Conn, err error) error {
		c, ok := gc.Context().(*conn)
		if !ok || c.state != stateREST {
			return nil
		}
		if closeConn || err != nil {
			c.state = stateClosed
			return gc.Close()
		}
		c.state = stateHTTP
		c.lastRead = c.srv.now().UnixNano() // idle from now: see Limits.HTTPIdleTimeout
		if gc.InboundBuffered() > 0 {
			c.onHTTP()
		}
		return nil
	})
}

// responseBytes serialises a fasthttp response (head and body).
func responseBytes(r *fasthttp.Response) []byte {
	var b bytes.Buffer
	_, _ = r.WriteTo(&b)
	return b.Bytes()
}

// replyError writes an ErrorDetail response from the loop (rest-api.md §1.5).
func (c *conn) replyError(status int, code, message string, closeConn bool) {
	var r fasthttp.Response
	writeError(&r, status, code, message)
	if closeConn {
		r.SetConnectionClose()
	}
	_, _ = c.gc.Write(responseBytes(&r))
	if closeConn {
		c.state = stateClosed
		_ = c.gc.Close()
	}
}

// replyStatus writes a short plain-text response from the loop and closes: used to
// reject WebSocket handshakes (client-protocol.md §1.7).
func (c *conn) replyStatus(status int, body string) {
	var r fasthttp.Response
	r.SetStatusCode(status)
	r.Header.SetContentType("text/plain; charset=utf-8")
	r.SetBodyString(body)
	r.SetConnectionClose()
	_, _ = c.gc.Write(responseBytes(&r))
	c.state = stateClosed
	_ = c.gc.Close()
}

func setError(ctx *fasthttp.RequestCtx, status int, code, message string) {
	writeError(&ctx.Response, status, code, message)
}

// writeError fills r with the ErrorDetail object and x-ms-error-code header.
func writeError(r *fasthttp.Response, status int, code, message string) {
	writeErrorDetail(r, status, code, message, "", "")
}

// writeErrorDetail is writeError with the optional ErrorDetail members (rest-api.md
// §1.5): target (the offending parameter) and inner.code; empty ones are omitted.
func writeErrorDetail(r *fasthttp.Response, status int, code, message, target, innerCode string) {
	r.SetStatusCode(status)
	r.Header.SetContentType("application/json")
	r.Header.Set("x-ms-error-code", code)
	if status == 401 {
		r.Header.Set("WWW-Authenticate", "Bearer")
	}
	b := make([]byte, 0, 64+len(code)+len(message)+len(target)+len(innerCode))
	b = append(b, `{"code":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	if target != "" || innerCode != "" {
		if target != "" {
			b = append(b, `,"target":`...)
			b = appendJSONString(b, target)
		}
		b = append(b, `,"details":[]`...)
		if innerCode != "" {
			b = append(b, `,"inner":{"code":`...)
			b = appendJSONString(b, innerCode)
			b = append(b, '}')
		}
	}
	r.SetBodyRaw(append(b, '}'))
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			switch ch {
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
			}
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}
