package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLoadConfigLog(t *testing.T) {
	cases := []struct {
		name, text string
		env        []string
		want       logSettings
	}{
		{"absent", "", nil, logSettings{Format: "text"}},
		{"file", "log: {format: json, level: debug}", nil, logSettings{Format: "json", Level: slog.LevelDebug, LevelSet: true}},
		{"case", "log: {format: JSON, level: Warn}", nil, logSettings{Format: "json", Level: slog.LevelWarn, LevelSet: true}},
		{"env", "log: {format: text, level: info}", []string{"WPS_LOG__FORMAT=json", "WPS_LOG__LEVEL=error"}, logSettings{Format: "json", Level: slog.LevelError, LevelSet: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, info, err := loadConfig(writeConfig(t, tc.text), tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if info.Log != tc.want {
				t.Errorf("log = %+v, want %+v", info.Log, tc.want)
			}
		})
	}
	_, _, err := loadConfig("", []string{"WPS_LOG__LEVEL=loud"})
	assertOneLineNaming(t, err, "log.level")
	assertContains(t, err, "WPS_LOG__LEVEL")
}

// TestLogLevelFlagOverrides: --log-level wins over log.level, also on reload.
func TestLogLevelFlagOverrides(t *testing.T) {
	src := configSource{path: writeConfig(t, "log: {level: debug}"), logLevel: "warn", environ: func() []string { return nil }}
	run, err := src.load()
	if err != nil {
		t.Fatal(err)
	}
	if run.level != slog.LevelWarn {
		t.Errorf("level %v, want WARN from --log-level", run.level)
	}
	src.logLevel = ""
	if run, _ = src.load(); run.level != slog.LevelDebug {
		t.Errorf("level %v, want DEBUG from log.level", run.level)
	}
}

// TestJSONLogShape: log.format json writes one object per line, time, level and msg
// first, then the fields (operations.md §5); the level can change while it runs.
func TestJSONLogShape(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	log := newLogger(&buf, "json", level)
	log.Debug("hidden")
	log.Info("listening", "listener", "127.0.0.1:8080", "hub", "chat")
	level.Set(slog.LevelDebug)
	log.Debug("shown", "connectionId", "c1")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", line, err)
		}
		prev := -1
		for _, key := range []string{`"time":`, `"level":`, `"msg":`} {
			i := strings.Index(line, key)
			if i <= prev {
				t.Errorf("%s out of order in %s", key, line)
			}
			prev = i
		}
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &m)
	if m["level"] != "INFO" || m["msg"] != "listening" || m["listener"] != "127.0.0.1:8080" || m["hub"] != "chat" {
		t.Errorf("first line %v", m)
	}
	if !strings.Contains(lines[1], `"msg":"shown"`) {
		t.Errorf("second line %s, want the debug line after the level changed", lines[1])
	}
}
