package upstream

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// sdkExtensionNames maps sdk-go's lower-cased extension names back to the
// spellings of §3.
var sdkExtensionNames = map[string]string{
	"awpsversion": "ce-awpsversion", "hub": "ce-hub", "connectionid": "ce-connectionId",
	"eventname": "ce-eventName", "userid": "ce-userId", "subprotocol": "ce-subprotocol",
	"connectionstate": "ce-connectionState", "signature": "ce-signature",
}

// sdkWriteHeaders is the alternative encoder: the event modelled as an sdk-go
// event.Event and written by its binary-mode binding into the fasthttp request.
func sdkWriteHeaders(rh *fasthttp.RequestHeader, h *eventHeaders) {
	e := event.New()
	e.SetType(h.ceType)
	e.SetSource(h.source)
	e.SetID(h.id)
	e.SetTime(h.at)
	e.SetDataContentType(h.ct.String())
	e.SetExtension("awpsversion", "1.0")
	e.SetExtension("hub", h.hub)
	e.SetExtension("connectionid", h.connID)
	e.SetExtension("eventname", h.name)
	if h.userID != "" {
		e.SetExtension("userid", h.userID)
	}
	if h.subprotocol != "" {
		e.SetExtension("subprotocol", h.subprotocol)
	}
	if h.state != "" {
		e.SetExtension("connectionstate", h.state)
	}
	if h.signature != "" {
		e.SetExtension("signature", h.signature)
	}
	rh.DisableNormalizing()
	rh.Add("WebHook-Request-Origin", h.origin)
	if h.auth != "" {
		rh.Add("Authorization", h.auth)
	}
	if err := binding.ToMessage(&e).ReadBinary(context.Background(), sdkWriter{rh}); err != nil {
		panic(err)
	}
}

type sdkWriter struct{ rh *fasthttp.RequestHeader }

func (w sdkWriter) Start(context.Context) error { return nil }
func (w sdkWriter) End(context.Context) error   { return nil }
func (w sdkWriter) SetData(io.Reader) error     { return nil }
func (w sdkWriter) SetAttribute(a spec.Attribute, v any) error {
	if a.Kind() == spec.DataContentType {
		w.rh.SetContentType(v.(string))
		return nil
	}
	if a.Kind() == spec.Time {
		tm, err := types.ToTime(v)
		if err != nil {
			return err
		}
		w.rh.Add("ce-time", formatCETime(tm))
		return nil
	}
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	w.rh.Add("ce-"+a.Name(), s)
	return nil
}
func (w sdkWriter) SetExtension(name string, v any) error {
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	w.rh.Add(sdkExtensionNames[name], s)
	return nil
}

func benchHeaders() eventHeaders {
	return eventHeaders{
		ceType: typeUserPrefix + "message", source: "/hubs/chat/client/Q2xpZW50MTIzNDU2Nzg5MA", id: "42",
		time: "2026-11-28T08:30:00Z", hub: "chat", connID: "Q2xpZW50MTIzNDU2Nzg5MA", name: "message",
		userID: "user1", subprotocol: "json.webpubsub.azure.v1", state: "eyJjb3VudCI6M30=",
		signature: Signature("Q2xpZW50MTIzNDU2Nzg5MA", []string{testKey}), origin: "wps.example.com", ct: Text,
		at: time.Date(2026, 11, 28, 8, 30, 0, 0, time.UTC),
	}
}

// Both encoders put the same headers on the request.
func TestSDKEncoderEquivalent(t *testing.T) {
	h := benchHeaders()
	dump := func(f func(*fasthttp.RequestHeader, *eventHeaders)) []string {
		var req fasthttp.Request
		f(&req.Header, &h)
		var out []string
		for k, v := range req.Header.All() {
			out = append(out, string(k)+": "+string(v))
		}
		out = append(out, "Content-Type: "+string(req.Header.ContentType()))
		slices.Sort(out)
		return out
	}
	hand, sdk := dump(writeHeaders), dump(sdkWriteHeaders)
	if !slices.Equal(hand, sdk) {
		t.Fatalf("encoders differ\nhand %v\n sdk %v", hand, sdk)
	}
}

// BenchmarkEncodeHeaders builds the headers of one user-event request.
func BenchmarkEncodeHeaders(b *testing.B) {
	for _, impl := range []struct {
		name string
		f    func(*fasthttp.RequestHeader, *eventHeaders)
	}{{"hand", writeHeaders}, {"sdk-go", sdkWriteHeaders}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			h := benchHeaders()
			req := fasthttp.AcquireRequest()
			b.ReportAllocs()
			for b.Loop() {
				req.Reset()
				impl.f(&req.Header, &h)
			}
			fasthttp.ReleaseRequest(req)
		})
	}
}

// BenchmarkUserEvent builds and sends one user event to an in-memory fasthttp
// upstream and waits for its result: the whole per-event cost of this package.
func BenchmarkUserEvent(b *testing.B) {
	for _, impl := range []struct {
		name string
		f    func(*fasthttp.RequestHeader, *eventHeaders)
	}{{"hand", writeHeaders}, {"sdk-go", sdkWriteHeaders}} {
		b.Run("impl="+impl.name, func(b *testing.B) {
			ln := fasthttputil.NewInmemoryListener()
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
				ctx.Response.Header.Set("WebHook-Allowed-Origin", "*")
			}}
			go srv.Serve(ln)
			defer ln.Close()
			c, err := New(Config{Keys: []string{testKey}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.http.Dial = func(string) (net.Conn, error) { return ln.Dial() }
			c.encode = impl.f
			hub, _ := CompileHub([]Handler{{URLTemplate: "http://upstream/api/{hub}/{event}", UserEventPattern: "*"}})
			s := c.NewSession(SessionInfo{Hub: "chat", HubKey: hub, ConnectionID: "Q2xpZW50MTIzNDU2Nzg5MA", UserID: "user1"})
			body := []byte(`hello`)
			done := make(chan EventResult, 1)
			cb := func(r EventResult) { done <- r }
			b.ReportAllocs()
			for b.Loop() {
				s.UserEvent("message", Text, body, cb)
				if r := <-done; r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		})
	}
}
