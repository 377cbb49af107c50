package window

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		in      Config
		horizon time.Duration
	}{
		{"zero", Config{}, time.Hour}, // 1h window + 0 lateness
		{"default", DefaultConfig(), time.Hour + 5*time.Minute},
		{"long window", Config{Windows: []time.Duration{2 * time.Hour}, AllowedLateness: 10 * time.Minute}, 2*time.Hour + 10*time.Minute},
		{"short windows floor at 1h", Config{Windows: []time.Duration{time.Minute}, AllowedLateness: time.Minute}, time.Hour},
		{"explicit", Config{Horizon: 3 * time.Hour}, 3 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.WithDefaults()
			if c.Horizon != tt.horizon {
				t.Errorf("Horizon: got %v; want %v", c.Horizon, tt.horizon)
			}
			if c.MaxPoints != 10_000 || len(c.Windows) == 0 {
				t.Errorf("MaxPoints, Windows: got %d, %v", c.MaxPoints, c.Windows)
			}
			if err := tt.in.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	// WithDefaults copies Windows.
	in := Config{Windows: []time.Duration{time.Minute}}
	in.WithDefaults().Windows[0] = time.Hour
	if in.Windows[0] != time.Minute {
		t.Error("WithDefaults aliases Windows")
	}
}

func TestConfigValidate(t *testing.T) {
	many := make([]time.Duration, MaxWindows+1)
	for i := range many {
		many[i] = time.Duration(i+1) * time.Second
	}
	tests := []struct {
		name string
		c    Config
		want string // in the error
	}{
		{"too many windows", Config{Windows: many}, "Windows has 17 entries; want <= 16"},
		{"zero window", Config{Windows: []time.Duration{time.Minute, 0}}, "Windows[1] is 0s"},
		{"negative window", Config{Windows: []time.Duration{-time.Minute}}, "Windows[0] is -1m0s"},
		{"window too long", Config{Windows: []time.Duration{MaxDuration + 1}}, "Windows[0]"},
		{"duplicate window", Config{Windows: []time.Duration{time.Minute, time.Hour, time.Minute}}, "Windows[2] is 1m0s, same as Windows[0]"},
		{"negative lateness", Config{AllowedLateness: -1}, "AllowedLateness is -1ns"},
		{"negative horizon", Config{Horizon: -1}, "Horizon is -1ns"},
		{"horizon too long", Config{Horizon: MaxDuration + 1}, "Horizon is"},
		{"horizon too short", Config{Horizon: time.Hour, AllowedLateness: time.Minute}, "want >= largest window 1h0m0s + AllowedLateness 1m0s = 1h1m0s"},
		{"negative max points", Config{MaxPoints: -1}, "MaxPoints is -1"},
		{"max points too large", Config{MaxPoints: MaxPointsLimit + 1}, "MaxPoints is 1048577; want >= 1 and <= 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v; want ErrInvalidConfig with %q", err, tt.want)
			}
			if _, err := NewSeries(tt.c); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSeries: got %v; want ErrInvalidConfig", err)
			}
		})
	}
}
