package engine

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

type listPage struct {
	Value []struct {
		ConnectionID string  `json:"connectionId"`
		UserID       *string `json:"userId"`
		Group        string  `json:"group"`
	} `json:"value"`
	NextLink string `json:"nextLink"`
}

// getPage GETs a list URL (a path or an absolute nextLink on the test server).
func getPage(t *testing.T, s *Server, pathOrURL string) listPage {
	t.Helper()
	path := strings.TrimPrefix(pathOrURL, s.testURL())
	if strings.HasPrefix(path, "http") {
		t.Fatalf("nextLink %q is not on the test server %s", pathOrURL, s.testURL())
	}
	resp := restReq(t, s, "GET", path, "", nil)
	wantStatus(t, resp, 200)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var p listPage
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Value == nil {
		t.Fatalf("%s: value missing or null", path)
	}
	return p
}

// walk follows nextLinks from first and returns every page; between pages it
// calls between (if set) with the page index.
func walk(t *testing.T, s *Server, first string, between func(i int)) []listPage {
	t.Helper()
	var pages []listPage
	for link := first; link != ""; {
		p := getPage(t, s, link)
		pages = append(pages, p)
		if len(pages) > 50 {
			t.Fatal("more than 50 pages: nextLink loops")
		}
		if between != nil && p.NextLink != "" {
			between(len(pages) - 1)
		}
		link = p.NextLink
	}
	return pages
}

func TestRESTListConnectionsInGroup(t *testing.T) {
	s := testServer(t, nil)
	var ids []string
	users := map[string]string{}
	for i := range 7 {
		user := fmt.Sprintf("u%d", i%3)
		if i == 6 {
			user = "" // one connection without a user
		}
		_, m := mustJSONClient(t, s, "lh", user, nil, []string{"room"})
		id := m["connectionId"].(string)
		ids = append(ids, id)
		users[id] = user
	}
	_, _ = mustJSONClient(t, s, "lh", "outsider", nil, []string{"other"})
	slices.Sort(ids)
	base := "/api/hubs/lh/groups/room/connections?api-version=2024-12-01"

	t.Run("one-page", func(t *testing.T) {
		p := getPage(t, s, base)
		if p.NextLink != "" || len(p.Value) != 7 {
			t.Fatalf("%d items, nextLink %q", len(p.Value), p.NextLink)
		}
		for i, v := range p.Value {
			if v.ConnectionID != ids[i] {
				t.Fatalf("item %d = %s, want %s (sorted)", i, v.ConnectionID, ids[i])
			}
			switch want := users[v.ConnectionID]; {
			case want == "" && v.UserID != nil:
				t.Errorf("%s: userId %q present for a connection without a user", v.ConnectionID, *v.UserID)
			case want != "" && (v.UserID == nil || *v.UserID != want):
				t.Errorf("%s: userId %v, want %s", v.ConnectionID, v.UserID, want)
			}
		}
	})
	t.Run("pages-of-2", func(t *testing.T) {
		pages := walk(t, s, base+"&maxpagesize=2", nil)
		var got []string
		for i, p := range pages {
			if len(p.Value) > 2 || (i < len(pages)-1 && len(p.Value) != 2) {
				t.Fatalf("page %d has %d items", i, len(p.Value))
			}
			for _, v := range p.Value {
				got = append(got, v.ConnectionID)
			}
		}
		if len(pages) != 4 || !slices.Equal(got, ids) {
			t.Fatalf("%d pages, items %v, want %v", len(pages), got, ids)
		}
		link := pages[0].NextLink
		for _, want := range []string{s.testURL() + "/api/hubs/lh/groups/room/connections?", "api-version=2024-12-01", "maxpagesize=2", "continuationToken="} {
			if !strings.Contains(link, want) {
				t.Errorf("nextLink %q lacks %q", link, want)
			}
		}
	})
	t.Run("top", func(t *testing.T) {
		pages := walk(t, s, base+"&maxpagesize=3&top=5", nil)
		n := 0
		for _, p := range pages {
			n += len(p.Value)
		}
		if n != 5 || len(pages) != 2 || len(pages[1].Value) != 2 {
			t.Fatalf("top=5 over pages of 3: %d items in %d pages", n, len(pages))
		}
		if p := getPage(t, s, base+"&top=7"); p.NextLink != "" || len(p.Value) != 7 {
			t.Fatalf("top = size: %d items, nextLink %q", len(p.Value), p.NextLink)
		}
		if p := getPage(t, s, base+"&maxpagesize=7"); p.NextLink != "" {
			t.Fatalf("a full last page has no nextLink, got %q", p.NextLink)
		}
	})
	t.Run("stable-under-churn", func(t *testing.T) {
		// Between pages, a connection already listed leaves and one not yet listed
		// joins another group: nothing repeats, nothing still present is skipped.
		seen := map[string]int{}
		pages := walk(t, s, base+"&maxpagesize=2", func(i int) {
			if i == 0 {
				wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/lh/groups/room/connections/"+ids[0], "", nil), 204)
				wantStatus(t, restReq(t, s, "PUT", "/api/hubs/lh/groups/side/connections/"+ids[5], "", nil), 200)
			}
		})
		for _, p := range pages {
			for _, v := range p.Value {
				seen[v.ConnectionID]++
			}
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("%s listed %d times", id, seen[id])
			}
		}
		wantStatus(t, restReq(t, s, "PUT", "/api/hubs/lh/groups/room/connections/"+ids[0], "", nil), 200)
	})
	t.Run("without-api-version", func(t *testing.T) {
		p := getPage(t, s, "/api/hubs/lh/groups/room/connections?maxpagesize=5")
		if !strings.Contains(p.NextLink, "api-version=2024-12-01") {
			t.Fatalf("nextLink %q has no api-version", p.NextLink)
		}
	})
	t.Run("unknown-group", func(t *testing.T) {
		if p := getPage(t, s, "/api/hubs/lh/groups/nobody-here/connections"); len(p.Value) != 0 || p.NextLink != "" {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("bad-paging", func(t *testing.T) {
		for _, q := range []string{"maxpagesize=0", "maxpagesize=201", "maxpagesize=x", "top=0", "top=-1", "continuationToken=%21%21", "continuationToken="} {
			resp := restReq(t, s, "GET", base+"&"+q, "", nil)
			wantStatus(t, resp, 400)
			readErrorDetail(t, resp)
		}
	})
}

func TestRESTListingExtensions(t *testing.T) {
	s := testServer(t, nil)
	_, a1 := mustJSONClient(t, s, "xh", "ann", nil, []string{"g1", "g2"})
	_, _ = mustJSONClient(t, s, "xh", "ann", nil, []string{"g3"})
	_, _ = mustJSONClient(t, s, "xh", "bea", nil, []string{"g1"})
	_, _ = mustJSONClient(t, s, "xh", "", nil, []string{"g1"})
	annConn := a1["connectionId"].(string)

	users := func(p []listPage) (out []string) {
		for _, pg := range p {
			for _, v := range pg.Value {
				if v.UserID != nil {
					out = append(out, *v.UserID)
				}
			}
		}
		return out
	}
	groups := func(p []listPage) (out []string) {
		for _, pg := range p {
			for _, v := range pg.Value {
				out = append(out, v.Group)
			}
		}
		return out
	}
	if got := users(walk(t, s, "/api/hubs/xh/groups/g1/users?maxpagesize=1", nil)); !slices.Equal(got, []string{"ann", "bea"}) {
		t.Errorf("users in g1 = %v", got)
	}
	if got := groups(walk(t, s, "/api/hubs/xh/users/ann/groups?maxpagesize=2", nil)); !slices.Equal(got, []string{"g1", "g2", "g3"}) {
		t.Errorf("groups of ann = %v", got)
	}
	if got := groups(walk(t, s, "/api/hubs/xh/users/ann/groups?top=2", nil)); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Errorf("groups of ann, top 2 = %v", got)
	}
	if got := groups(walk(t, s, "/api/hubs/xh/connections/"+annConn+"/groups", nil)); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Errorf("groups of %s = %v", annConn, got)
	}
	if p := getPage(t, s, "/api/hubs/xh/users/nobody/groups"); len(p.Value) != 0 {
		t.Errorf("groups of an unknown user = %+v", p.Value)
	}
	resp := restReq(t, s, "GET", "/api/hubs/xh/connections/nope/groups", "", nil)
	wantStatus(t, resp, 404)
	readErrorDetail(t, resp)
	// The DELETE operations on the same paths are unchanged.
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/xh/connections/"+annConn+"/groups", "", nil), 204)
	if p := getPage(t, s, "/api/hubs/xh/connections/"+annConn+"/groups"); len(p.Value) != 0 {
		t.Errorf("after DELETE: %+v", p.Value)
	}
	wantStatus(t, restReq(t, s, "DELETE", "/api/hubs/xh/users/ann/groups", "", nil), 204)
	if p := getPage(t, s, "/api/hubs/xh/users/ann/groups"); len(p.Value) != 0 {
		t.Errorf("after DELETE: %+v", p.Value)
	}
	resp = restReq(t, s, "POST", "/api/hubs/xh/groups/g1/users", "", nil)
	wantStatus(t, resp, 405)
	if resp.Header.Get("Allow") != "GET" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
}

// TestRESTLargeHead: request heads up to the 16 KiB limit parse (long filters make
// long URLs and long bearer tokens); larger ones get 431.
func TestRESTLargeHead(t *testing.T) {
	s := testServer(t, nil)
	for _, tc := range []struct {
		pad    int
		status int
	}{{10 << 10, 200}, {20 << 10, 431}} {
		req, _ := http.NewRequest("GET", s.testURL()+"/api/health", nil)
		req.Header.Set("X-Pad", strings.Repeat("p", tc.pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%d-byte header: status %d, want %d", tc.pad, resp.StatusCode, tc.status)
		}
	}
}
