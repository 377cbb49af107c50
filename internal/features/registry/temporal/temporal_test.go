package temporal

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestDST checks hand-computed values around the 2026 America/New_York
// changes: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC) and 2026-11-01
// 02:00 EDT -> 01:00 EST (06:00 UTC). Both days are Sundays.
func TestDST(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	tests := []struct {
		at         string
		hour, dow  int
		wantOffset int // seconds east of UTC, to show which side of the change
	}{
		{"2026-03-08T06:59:59Z", 1, 7, -5 * 3600}, // 01:59:59 EST
		{"2026-03-08T07:00:00Z", 3, 7, -4 * 3600}, // 03:00:00 EDT; 02:xx never happens
		{"2026-03-08T07:30:00Z", 3, 7, -4 * 3600},
		{"2026-03-09T03:59:59Z", 23, 7, -4 * 3600}, // Sunday 23:59:59 EDT
		{"2026-03-09T04:00:00Z", 0, 1, -4 * 3600},  // Monday 00:00 EDT
		{"2026-11-01T05:30:00Z", 1, 7, -4 * 3600},  // 01:30 EDT
		{"2026-11-01T05:59:59Z", 1, 7, -4 * 3600},
		{"2026-11-01T06:00:00Z", 1, 7, -5 * 3600}, // 01:00 EST: hour 1 again
		{"2026-11-01T06:30:00Z", 1, 7, -5 * 3600},
		{"2026-11-01T07:00:00Z", 2, 7, -5 * 3600},
		{"2026-11-02T04:59:59Z", 23, 7, -5 * 3600},
		{"2026-11-02T05:00:00Z", 0, 1, -5 * 3600},
	}
	for _, tt := range tests {
		at := utc(tt.at)
		if _, off := at.In(ny).Zone(); off != tt.wantOffset {
			t.Errorf("%s: offset %d; want %d", tt.at, off, tt.wantOffset)
		}
		if got := HourOfDay(at, ny); got != tt.hour {
			t.Errorf("HourOfDay(%s, New_York) = %d; want %d", tt.at, got, tt.hour)
		}
		if got := DayOfWeek(at, ny); got != tt.dow {
			t.Errorf("DayOfWeek(%s, New_York) = %d; want %d", tt.at, got, tt.dow)
		}
	}
	// Elapsed time ignores the wall-clock jump: 01:59 EST to 03:01 EDT is
	// two minutes, and 01:30 EDT to 01:30 EST is one hour.
	for _, tt := range []struct {
		last, at string
		want     float64
	}{
		{"2026-03-08T06:59:00Z", "2026-03-08T07:01:00Z", 120},
		{"2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", 3600},
	} {
		got, ok, err := SinceLast(utc(tt.at), utc(tt.last))
		if err != nil || !ok || got != tt.want {
			t.Errorf("SinceLast(%s, %s) = %v, %v, %v; want %v", tt.at, tt.last, got, ok, err, tt.want)
		}
	}
}

func TestWeekdays(t *testing.T) {
	// 2026-06-01 is a Monday.
	for i := range 7 {
		at := time.Date(2026, 6, 1+i, 12, 0, 0, 0, time.UTC)
		if got := DayOfWeek(at, time.UTC); got != i+1 {
			t.Errorf("DayOfWeek(%s) = %d; want %d", at.Format("Mon 2006-01-02"), got, i+1)
		}
	}
	// The same instant is Monday in Tokyo and Sunday in Los Angeles.
	at := utc("2026-06-07T20:00:00Z") // Sunday
	if got := DayOfWeek(at, mustLoc(t, "Asia/Tokyo")); got != 1 {
		t.Errorf("Tokyo: %d; want 1", got)
	}
	if got := DayOfWeek(at, mustLoc(t, "America/Los_Angeles")); got != 7 {
		t.Errorf("Los Angeles: %d; want 7", got)
	}
}

// TestZonesGolden compares with Python's zoneinfo (tools/features/registry).
func TestZonesGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/zones.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Zones map[string][][3]int64 `json:"zones"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Zones) < 7 {
		t.Fatalf("golden has %d zones; want 7", len(g.Zones))
	}
	n := 0
	for zone, rows := range g.Zones {
		loc := mustLoc(t, zone)
		for _, r := range rows {
			at := time.Unix(r[0], 0)
			if h, d := HourOfDay(at, loc), DayOfWeek(at, loc); h != int(r[1]) || d != int(r[2]) {
				t.Errorf("%s at %s: hour %d, day %d; want %d, %d", zone, at.UTC().Format(time.RFC3339), h, d, r[1], r[2])
			}
			n++
		}
	}
	if n < 500 {
		t.Errorf("golden has %d rows; want at least 500", n)
	}
}

func TestSinceLast(t *testing.T) {
	at := utc("2026-01-01T00:00:10Z")
	if _, ok, err := SinceLast(at, time.Time{}); ok || err != nil {
		t.Errorf("no previous event: ok = %v, err = %v; want false, nil", ok, err)
	}
	if s, ok, err := SinceLast(at, at); s != 0 || !ok || err != nil {
		t.Errorf("same instant: %v, %v, %v; want 0, true, nil", s, ok, err)
	}
	if s, _, _ := SinceLast(at, at.Add(-1500*time.Millisecond)); s != 1.5 {
		t.Errorf("1.5 s: got %v", s)
	}
	_, _, err := SinceLast(at, at.Add(time.Second))
	if !errors.Is(err, ErrOrder) || err.Error() != "temporal: previous event after the reference time: previous event 2026-01-01T00:00:11Z is after 2026-01-01T00:00:10Z" {
		t.Errorf("later previous event: err = %v", err)
	}
}

func TestLoadLocation(t *testing.T) {
	for _, name := range []string{"", "Local", "Mars/Olympus_Mons", "../etc/passwd"} {
		if _, err := LoadLocation(name); !errors.Is(err, ErrZone) {
			t.Errorf("LoadLocation(%q) error = %v; want ErrZone", name, err)
		}
	}
	if loc := mustLoc(t, "Europe/Berlin"); loc.String() != "Europe/Berlin" {
		t.Errorf("got %v", loc)
	}
}
