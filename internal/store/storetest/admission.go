package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/collectord/collectord/internal/admission"
	"github.com/collectord/collectord/internal/collector"
)

// admitTime is the first moment of the admission tests. Every call passes
// an explicit time, so no test waits for a window to pass.
var admitTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// RunAdmission covers admission.Ledger: redelivery, deduplication, the hour
// and day budgets, the class cap, the order of the checks, candidates of one
// call counting against each other, concurrent calls and pruning.
func RunAdmission(t *testing.T, open Factory) {
	t.Run("Redelivery", func(t *testing.T) { testAdmitRedelivery(t, open(t)) })
	t.Run("Dedup", func(t *testing.T) { testAdmitDedup(t, open(t)) })
	t.Run("HourBudget", func(t *testing.T) { testAdmitHourBudget(t, open(t)) })
	t.Run("DayBudget", func(t *testing.T) { testAdmitDayBudget(t, open(t)) })
	t.Run("ClassCap", func(t *testing.T) { testAdmitClassCap(t, open(t)) })
	t.Run("CheckOrder", func(t *testing.T) { testAdmitCheckOrder(t, open) })
	t.Run("SameCall", func(t *testing.T) { testAdmitSameCall(t, open(t)) })
	t.Run("PerCollector", func(t *testing.T) { testAdmitPerCollector(t, open(t)) })
	t.Run("NoPolicy", func(t *testing.T) { testAdmitNoPolicy(t, open(t)) })
	t.Run("InvalidCandidates", func(t *testing.T) { testAdmitInvalid(t, open(t)) })
	t.Run("Concurrent", func(t *testing.T) { testAdmitConcurrent(t, open(t)) })
	t.Run("Prune", func(t *testing.T) { testAdmitPrune(t, open(t)) })
}

// Candidate returns an admission candidate.
func Candidate(recordID, contentHash, topConceptID string) admission.Candidate {
	return admission.Candidate{RecordID: recordID, ContentHash: contentHash, TopConceptID: topConceptID}
}

// requireAdmit calls Admit and compares its result with want, one entry per
// candidate ("" for admitted).
func requireAdmit(t *testing.T, l admission.Ledger, ref admission.Ref, p collector.Policy, now time.Time, step string, candidates []admission.Candidate, want []string) {
	t.Helper()
	got, err := l.Admit(context.Background(), ref, p, now, candidates)
	if err != nil {
		t.Fatalf("%s: Admit: %v", step, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: Admit = %q, want %q", step, got, want)
	}
}

var refC1 = admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "c1"}

func testAdmitRedelivery(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 2, DedupWindow: time.Hour}
	now := admitTime

	requireAdmit(t, s, refC1, p, now, "first delivery",
		[]admission.Candidate{Candidate("r1", "h1", "cat")}, []string{""})
	// The same record again, with the same content: a redelivery is
	// admitted, not deduplicated.
	requireAdmit(t, s, refC1, p, now.Add(time.Minute), "redelivery",
		[]admission.Candidate{Candidate("r1", "h1", "cat")}, []string{""})
	requireAdmit(t, s, refC1, p, now.Add(2*time.Minute), "second redelivery",
		[]admission.Candidate{Candidate("r1", "h1", "cat")}, []string{""})
	// r1 counted once, so one more record fits the hour budget of 2.
	requireAdmit(t, s, refC1, p, now.Add(3*time.Minute), "new records",
		[]admission.Candidate{Candidate("r2", "h2", "cat"), Candidate("r3", "h3", "cat")},
		[]string{"", admission.ReasonOverHourBudget})
	// A redelivery is admitted even when the budget is full.
	requireAdmit(t, s, refC1, p, now.Add(4*time.Minute), "redelivery over budget",
		[]admission.Candidate{Candidate("r2", "h2", "cat")}, []string{""})
	// A refused record was not remembered, so it is checked again.
	requireAdmit(t, s, refC1, p, now.Add(5*time.Minute), "refused record again",
		[]admission.Candidate{Candidate("r3", "h3", "cat")}, []string{admission.ReasonOverHourBudget})
	requireAdmit(t, s, refC1, p, now.Add(time.Hour+5*time.Minute), "refused record after the hour",
		[]admission.Candidate{Candidate("r3", "h3", "cat")}, []string{""})
}

func testAdmitDedup(t *testing.T, s Store) {
	p := collector.Policy{DedupWindow: 10 * time.Minute}
	now := admitTime

	requireAdmit(t, s, refC1, p, now, "first",
		[]admission.Candidate{Candidate("r1", "h", "")}, []string{""})
	requireAdmit(t, s, refC1, p, now.Add(5*time.Minute), "inside the window",
		[]admission.Candidate{Candidate("r2", "h", ""), Candidate("r3", "other", "")},
		[]string{admission.ReasonDuplicate, ""})
	requireAdmit(t, s, refC1, p, now.Add(10*time.Minute-time.Nanosecond), "last nanosecond of the window",
		[]admission.Candidate{Candidate("r4", "h", "")}, []string{admission.ReasonDuplicate})
	// An admission exactly one window old no longer counts.
	requireAdmit(t, s, refC1, p, now.Add(10*time.Minute), "end of the window",
		[]admission.Candidate{Candidate("r5", "h", "")}, []string{""})
	// r5 opened a new window.
	requireAdmit(t, s, refC1, p, now.Add(15*time.Minute), "inside the new window",
		[]admission.Candidate{Candidate("r6", "h", "")}, []string{admission.ReasonDuplicate})

	// A blank content hash never matches.
	requireAdmit(t, s, refC1, p, now.Add(16*time.Minute), "blank hashes",
		[]admission.Candidate{Candidate("r7", "", ""), Candidate("r8", "", "")}, []string{"", ""})

	// Without a window, equal content is admitted.
	requireAdmit(t, s, refC1, collector.Policy{}, now.Add(17*time.Minute), "no dedup window",
		[]admission.Candidate{Candidate("r9", "h", "")}, []string{""})
}

func testAdmitHourBudget(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 3}
	now := admitTime
	five := func(prefix string) []admission.Candidate {
		var out []admission.Candidate
		for i := 0; i < 5; i++ {
			out = append(out, Candidate(fmt.Sprintf("%s%d", prefix, i), "", ""))
		}
		return out
	}
	over := admission.ReasonOverHourBudget

	requireAdmit(t, s, refC1, p, now, "first batch", five("a"), []string{"", "", "", over, over})
	requireAdmit(t, s, refC1, p, now.Add(30*time.Minute), "half an hour later",
		five("b"), []string{over, over, over, over, over})
	requireAdmit(t, s, refC1, p, now.Add(time.Hour-time.Nanosecond), "last nanosecond of the hour",
		five("c"), []string{over, over, over, over, over})
	requireAdmit(t, s, refC1, p, now.Add(time.Hour), "an hour later",
		five("d"), []string{"", "", "", over, over})
}

func testAdmitDayBudget(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 3, MaxPerDay: 5}
	now := admitTime
	batch := func(prefix string, n int) []admission.Candidate {
		var out []admission.Candidate
		for i := 0; i < n; i++ {
			out = append(out, Candidate(fmt.Sprintf("%s%d", prefix, i), "", ""))
		}
		return out
	}
	hour, day := admission.ReasonOverHourBudget, admission.ReasonOverDayBudget

	requireAdmit(t, s, refC1, p, now, "hour 0", batch("a", 4), []string{"", "", "", hour})
	requireAdmit(t, s, refC1, p, now.Add(time.Hour), "hour 1", batch("b", 4), []string{"", "", day, day})
	requireAdmit(t, s, refC1, p, now.Add(23*time.Hour), "hour 23", batch("c", 2), []string{day, day})
	// A day after the first batch, its 3 admissions leave the day window;
	// the 2 of hour 1 still count.
	requireAdmit(t, s, refC1, p, now.Add(24*time.Hour), "hour 24", batch("d", 4), []string{"", "", "", hour})
	requireAdmit(t, s, refC1, p, now.Add(25*time.Hour-time.Nanosecond), "just before hour 25", batch("e", 1), []string{hour})
	// At hour 25, the 2 of hour 1 leave the day window as well.
	requireAdmit(t, s, refC1, p, now.Add(25*time.Hour), "hour 25", batch("f", 3), []string{"", "", day})
}

func testAdmitClassCap(t *testing.T, s Store) {
	p := collector.Policy{MaxPerConcept: 2, BalanceWindow: time.Hour}
	now := admitTime
	capped := admission.ReasonClassCapped

	requireAdmit(t, s, refC1, p, now, "first batch",
		[]admission.Candidate{
			Candidate("r1", "", "cat"), Candidate("r2", "", "cat"), Candidate("r3", "", "dog"),
			Candidate("r4", "", "cat"), Candidate("r5", "", ""), Candidate("r6", "", ""),
			Candidate("r7", "", ""), Candidate("r8", "", "dog"),
		},
		[]string{"", "", "", capped, "", "", capped, ""})
	requireAdmit(t, s, refC1, p, now.Add(59*time.Minute), "inside the window",
		[]admission.Candidate{Candidate("r9", "", "dog"), Candidate("r10", "", "bird")},
		[]string{capped, ""})
	requireAdmit(t, s, refC1, p, now.Add(time.Hour), "after the window",
		[]admission.Candidate{Candidate("r11", "", "cat"), Candidate("r12", "", "cat"), Candidate("r13", "", "cat")},
		[]string{"", "", capped})

	// The cap needs both fields; either alone caps nothing.
	for name, alone := range map[string]collector.Policy{
		"MaxPerConcept alone": {MaxPerConcept: 1},
		"BalanceWindow alone": {BalanceWindow: time.Hour},
	} {
		ref := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: name}
		requireAdmit(t, s, ref, alone, now, name,
			[]admission.Candidate{Candidate("x1", "", "cat"), Candidate("x2", "", "cat")},
			[]string{"", ""})
	}
}

// testAdmitCheckOrder fills two limits at once and expects the reason of
// the check that runs first.
func testAdmitCheckOrder(t *testing.T, open Factory) {
	now := admitTime
	cases := []struct {
		name   string
		policy collector.Policy
		// first is admitted; second then breaks both limits.
		first, second admission.Candidate
		want          string
	}{
		{
			name:   "redelivery before dedup",
			policy: collector.Policy{DedupWindow: time.Hour},
			first:  Candidate("r1", "h", "cat"), second: Candidate("r1", "h", "cat"),
			want: "",
		},
		{
			name:   "redelivery before budgets and cap",
			policy: collector.Policy{MaxPerHour: 1, MaxPerDay: 1, MaxPerConcept: 1, BalanceWindow: time.Hour},
			first:  Candidate("r1", "h", "cat"), second: Candidate("r1", "h", "cat"),
			want: "",
		},
		{
			name:   "dedup before hour budget",
			policy: collector.Policy{DedupWindow: time.Hour, MaxPerHour: 1},
			first:  Candidate("r1", "h", "cat"), second: Candidate("r2", "h", "cat"),
			want: admission.ReasonDuplicate,
		},
		{
			name:   "hour budget before day budget",
			policy: collector.Policy{MaxPerHour: 1, MaxPerDay: 1},
			first:  Candidate("r1", "h1", "cat"), second: Candidate("r2", "h2", "cat"),
			want: admission.ReasonOverHourBudget,
		},
		{
			name:   "day budget before class cap",
			policy: collector.Policy{MaxPerDay: 1, MaxPerConcept: 1, BalanceWindow: time.Hour},
			first:  Candidate("r1", "h1", "cat"), second: Candidate("r2", "h2", "cat"),
			want: admission.ReasonOverDayBudget,
		},
		{
			name:   "hour budget before class cap",
			policy: collector.Policy{MaxPerHour: 1, MaxPerConcept: 1, BalanceWindow: time.Hour},
			first:  Candidate("r1", "h1", "cat"), second: Candidate("r2", "h2", "cat"),
			want: admission.ReasonOverHourBudget,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			requireAdmit(t, s, refC1, tc.policy, now, "first", []admission.Candidate{tc.first}, []string{""})
			requireAdmit(t, s, refC1, tc.policy, now.Add(time.Minute), "second", []admission.Candidate{tc.second}, []string{tc.want})
		})
	}
}

// testAdmitSameCall expects candidates admitted earlier in a call to count
// against later ones, and refused ones not to.
func testAdmitSameCall(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 3, DedupWindow: time.Hour, MaxPerConcept: 1, BalanceWindow: time.Hour}
	requireAdmit(t, s, refC1, p, admitTime, "one call",
		[]admission.Candidate{
			Candidate("r1", "h1", "cat"),
			Candidate("r1", "h1", "cat"), // the same record twice: admitted, counted once
			Candidate("r2", "h1", "dog"), // same content as r1
			Candidate("r3", "h3", "cat"), // r1 took the cat slot
			Candidate("r4", "h4", "dog"),
			Candidate("r5", "h5", "bird"),
			Candidate("r6", "h6", "fish"), // r1, r4 and r5 filled the hour
		},
		[]string{"", "", admission.ReasonDuplicate, admission.ReasonClassCapped, "", "", admission.ReasonOverHourBudget})
}

func testAdmitPerCollector(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 1, DedupWindow: time.Hour, MaxPerConcept: 1, BalanceWindow: time.Hour}
	refs := []admission.Ref{
		refC1,
		{UserID: "u1", AppID: "a1", CollectorID: "c2"},
		{UserID: "u1", AppID: "a2", CollectorID: "c1"},
		{UserID: "u2", AppID: "a1", CollectorID: "c1"},
	}
	for _, ref := range refs {
		requireAdmit(t, s, ref, p, admitTime, "collector "+ref.UserID+"/"+ref.AppID+"/"+ref.CollectorID,
			[]admission.Candidate{Candidate("r1", "h", "cat")}, []string{""})
	}
	requireAdmit(t, s, refC1, p, admitTime, "first collector again",
		[]admission.Candidate{Candidate("r2", "other", "dog")}, []string{admission.ReasonOverHourBudget})
}

// testAdmitNoPolicy expects the zero policy to admit everything.
func testAdmitNoPolicy(t *testing.T, s Store) {
	var candidates []admission.Candidate
	want := make([]string, 100)
	for i := 0; i < 100; i++ {
		candidates = append(candidates, Candidate(fmt.Sprintf("r%d", i), "same", "cat"))
	}
	requireAdmit(t, s, refC1, collector.Policy{}, admitTime, "zero policy", candidates, want)

	got, err := s.Admit(context.Background(), refC1, collector.Policy{}, admitTime, nil)
	if err != nil {
		t.Fatalf("Admit of no candidates: %v", err)
	}
	if len(got) != 0 {
		t.Errorf("Admit of no candidates = %q, want none", got)
	}
}

func testAdmitInvalid(t *testing.T, s Store) {
	p := collector.Policy{MaxPerHour: 1}
	_, err := s.Admit(context.Background(), refC1, p, admitTime,
		[]admission.Candidate{Candidate("r1", "", ""), Candidate("", "h", "")})
	if err == nil {
		t.Fatal("Admit accepted a candidate without RecordID")
	}

	// The rejected call admitted nothing, so r1 still fits the budget.
	requireAdmit(t, s, refC1, p, admitTime, "after the rejected call",
		[]admission.Candidate{Candidate("r2", "", "")}, []string{""})
}

// testAdmitConcurrent admits 200 candidates for one collector from 8
// goroutines at once: exactly MaxPerHour of them may pass.
func testAdmitConcurrent(t *testing.T, s Store) {
	RequireConcurrentAdmit(t, []admission.Ledger{s})
}

// RequireConcurrentAdmit sends 200 candidates for one collector with
// MaxPerHour 50 from 8 goroutines, spread over the given ledgers (several
// stores on one database stand for several processes), and expects exactly
// 50 admitted.
func RequireConcurrentAdmit(t *testing.T, ledgers []admission.Ledger) {
	t.Helper()
	const workers, perWorker, batch, budget = 8, 25, 5, 50
	ctx := context.Background()
	p := collector.Policy{MaxPerHour: budget}

	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := map[string]bool{}
	errs := make(chan error, workers*perWorker)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ledgers[w%len(ledgers)]
			for start := 0; start < perWorker; start += batch {
				var candidates []admission.Candidate
				for i := start; i < start+batch; i++ {
					candidates = append(candidates, Candidate(fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("h%d-%d", w, i), ""))
				}
				// Each call is a little later, as in a real stream of
				// batches, all within one hour.
				now := admitTime.Add(time.Duration(start) * time.Second)
				reasons, err := l.Admit(ctx, refC1, p, now, candidates)
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				for i, reason := range reasons {
					if reason == "" {
						admitted[candidates[i].RecordID] = true
					} else if reason != admission.ReasonOverHourBudget {
						errs <- fmt.Errorf("candidate %s rejected as %q, want %q", candidates[i].RecordID, reason, admission.ReasonOverHourBudget)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Admit: %v", err)
	}
	if len(admitted) != budget {
		t.Errorf("%d candidates admitted, want exactly %d", len(admitted), budget)
	}

	// The ledger agrees: the budget is full, and every admitted record is
	// recognized as a redelivery.
	var again []admission.Candidate
	for id := range admitted {
		again = append(again, Candidate(id, "", ""))
	}
	again = append(again, Candidate("late", "", ""))
	want := make([]string, len(again))
	want[len(want)-1] = admission.ReasonOverHourBudget
	requireAdmit(t, ledgers[0], refC1, p, admitTime.Add(30*time.Minute), "after the concurrent calls", again, want)
}

func testAdmitPrune(t *testing.T, s Store) {
	ctx := context.Background()
	now := admitTime
	requireAdmit(t, s, refC1, collector.Policy{}, now, "r1", []admission.Candidate{Candidate("r1", "", "")}, []string{""})
	requireAdmit(t, s, refC1, collector.Policy{}, now.Add(time.Hour), "r2", []admission.Candidate{Candidate("r2", "", "")}, []string{""})
	other := admission.Ref{UserID: "u1", AppID: "a1", CollectorID: "c2"}
	requireAdmit(t, s, other, collector.Policy{}, now.Add(time.Minute), "other collector", []admission.Candidate{Candidate("r1", "", "")}, []string{""})

	removed, err := s.PruneAdmissions(ctx, now.Add(time.Hour))
	if err != nil {
		t.Fatalf("PruneAdmissions: %v", err)
	}
	if removed != 2 {
		t.Errorf("PruneAdmissions removed %d, want 2 (admissions strictly before the time)", removed)
	}
	removed, err = s.PruneAdmissions(ctx, now.Add(time.Hour))
	if err != nil {
		t.Fatalf("second PruneAdmissions: %v", err)
	}
	if removed != 0 {
		t.Errorf("second PruneAdmissions removed %d, want 0", removed)
	}

	// r1 is forgotten, so it is no redelivery and meets the full day
	// budget; r2 is kept and still a redelivery.
	p := collector.Policy{MaxPerDay: 1}
	requireAdmit(t, s, refC1, p, now.Add(2*time.Hour), "after pruning",
		[]admission.Candidate{Candidate("r1", "", ""), Candidate("r2", "", "")},
		[]string{admission.ReasonOverDayBudget, ""})
}
