package session_test

import (
	"context"
	"fmt"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/session"
)

func Example() {
	// The embedded store; NewRedis(client, cfg, opts) is the shared one.
	s, err := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	evs := []features.Event{
		{EntityID: "user42", Type: "view", Timestamp: start},
		{EntityID: "user42", Type: "click", Timestamp: start.Add(40 * time.Second)},
		{EntityID: "user42", Type: "purchase", Timestamp: start.Add(6 * time.Minute)},
		// 30 minutes after the last activity: a new session.
		{EntityID: "user42", Type: "view", Timestamp: start.Add(36 * time.Minute)},
	}
	res, errs := s.ProcessBatch(context.Background(), evs)
	for i, r := range res {
		if errs[i] != nil {
			panic(errs[i])
		}
		fmt.Printf("%s %s", r.SessionID[:8], r.LastActivity.Format("15:04:05"))
		for _, v := range r.Values {
			if v.Null {
				fmt.Printf(" %s=null", v.Name)
			} else {
				fmt.Printf(" %s=%.4g", v.Name, v.Value)
			}
		}
		fmt.Println()
	}
	// Ids pinned with: printf 'user42\x001714564800000000000' | sha1sum
	// Output:
	// 69e2f15e 12:00:00 session_duration=0 events_in_session=1 avg_time_between_events=null session_engagement_score=0.44 is_new_session=1
	// 69e2f15e 12:00:40 session_duration=40 events_in_session=2 avg_time_between_events=40 session_engagement_score=0.6 is_new_session=0
	// 69e2f15e 12:06:00 session_duration=360 events_in_session=3 avg_time_between_events=180 session_engagement_score=0.96 is_new_session=0
	// e5b53c6b 12:36:00 session_duration=0 events_in_session=1 avg_time_between_events=null session_engagement_score=0.44 is_new_session=1
}
