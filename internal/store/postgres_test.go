package store_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/collectord/collectord/internal/audit"
	"github.com/collectord/collectord/internal/collector"
	"github.com/collectord/collectord/internal/pb/clarifaipb"
	"github.com/collectord/collectord/internal/store"
	"github.com/collectord/collectord/internal/store/storetest"
)

// openTestPostgres opens a store in schema, closed when t ends.
func openTestPostgres(t testing.TB, dsn, schema string) *store.Postgres {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{
		URL:      dsn,
		Schema:   schema,
		MaxConns: 8,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openFreshPostgres opens a store in a new schema of its own.
func openFreshPostgres(t testing.TB) *store.Postgres {
	t.Helper()
	dsn, schema := storetest.NewPostgresSchema(t)
	return openTestPostgres(t, dsn, schema)
}

func TestPostgres_Contract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openFreshPostgres(t)
	})
}

func TestPostgres_Audit(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) audit.Store {
		return openFreshPostgres(t)
	})
}

func TestSQLite_Audit(t *testing.T) {
	storetest.RunAudit(t, func(t *testing.T) audit.Store {
		return openTestSQLite(t, t.TempDir())
	})
}

// TestPostgres_ConcurrentOpen starts several stores on one new schema at
// once, as pods of one deployment do: the advisory lock lets exactly one
// apply the migrations and the others find them applied.
func TestPostgres_ConcurrentOpen(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	const stores = 6

	var wg sync.WaitGroup
	errs := make(chan error, stores)
	opened := make(chan *store.Postgres, stores)
	for i := 0; i < stores; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{
				URL: dsn, Schema: schema, MaxConns: 2, Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				errs <- err
				return
			}
			opened <- s
		}()
	}
	wg.Wait()
	close(errs)
	close(opened)
	for s := range opened {
		t.Cleanup(func() { s.Close() })
	}
	for err := range errs {
		t.Errorf("OpenPostgres: %v", err)
	}

	var versions, names []string
	rows := queryStrings(t, dsn, schema, `SELECT version::text || ' ' || name FROM schema_migrations ORDER BY version`)
	for _, r := range rows {
		version, name, _ := strings.Cut(r, " ")
		versions = append(versions, version)
		names = append(names, name)
	}
	if len(versions) == 0 || versions[0] != "1" {
		t.Errorf("schema_migrations versions = %v, want them to start at 1", versions)
	}
	if len(names) != len(uniq(names)) {
		t.Errorf("a migration was recorded twice: %v", names)
	}
}

func TestPostgres_NewerSchemaRejected(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	s := openTestPostgres(t, dsn, schema)
	s.Close()

	execIn(t, dsn, schema, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`)

	_, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: dsn, Schema: schema})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenPostgres of a newer schema error = %v, want a 'newer' error", err)
	}
}

// TestPostgres_SearchPathURL selects the schema with search_path in the URL,
// as a deployment does through store.postgres_url.
func TestPostgres_SearchPathURL(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	s := openTestPostgres(t, storetest.WithSearchPath(t, dsn, schema), "")
	ctx := context.Background()

	if err := s.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "c1")); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	got := queryStrings(t, dsn, schema, `SELECT id FROM collectors`)
	if len(got) != 1 || got[0] != "c1" {
		t.Errorf("collectors in schema %s = %v, want [c1]", schema, got)
	}
}

func TestPostgres_MissingSchemaInURL(t *testing.T) {
	dsn := storetest.PostgresURL(t)
	_, err := store.OpenPostgres(context.Background(), store.PostgresConfig{
		URL:    storetest.WithSearchPath(t, dsn, "collectord_test_no_such_schema"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "search_path") {
		t.Errorf("OpenPostgres with a missing schema error = %v, want one naming search_path", err)
	}
}

func TestOpenPostgres_InvalidConfig(t *testing.T) {
	cases := map[string]string{
		"empty URL":   "",
		"bad URL":     "postgres://%zz",
		"bad sslmode": "postgres://postgres@127.0.0.1:1/test?sslmode=sometimes",
	}
	for name, dsn := range cases {
		t.Run(name, func(t *testing.T) {
			if s, err := store.OpenPostgres(context.Background(), store.PostgresConfig{URL: dsn}); err == nil {
				s.Close()
				t.Errorf("OpenPostgres accepted %q", dsn)
			}
		})
	}
}

// TestOpenPostgres_PasswordNotInError makes sure a connection failure does
// not print the password of the URL.
func TestOpenPostgres_PasswordNotInError(t *testing.T) {
	const password = "hunter2-do-not-print"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Port 1 on loopback refuses the connection at once.
	_, err := store.OpenPostgres(ctx, store.PostgresConfig{
		URL: "postgres://collectord:" + password + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
	})
	if err == nil {
		t.Fatal("OpenPostgres of a closed port succeeded")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error contains the password: %v", err)
	}
}

// TestPostgres_ChangeFeed writes through one store and expects the listeners
// of another store on the same schema to run, while the writer's own feed
// does not run its listeners a second time.
func TestPostgres_ChangeFeed(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	writer := openTestPostgres(t, dsn, schema)
	reader := openTestPostgres(t, dsn, schema)
	ctx := context.Background()

	var writerCalls atomic.Int64
	writer.OnChange(func() { writerCalls.Add(1) })
	changes := make(chan struct{}, 100)
	reader.OnChange(func() { changes <- struct{}{} })

	c := storetest.NewCollector("u1", "a1", "c1")
	steps := []struct {
		name string
		run  func() error
	}{
		{"insert", func() error { return writer.InsertCollector(ctx, c) }},
		{"update", func() error { return writer.UpdateCollector(ctx, c) }},
		{"delete", func() error { return writer.DeleteCollector(ctx, "u1", "a1", "c1") }},
		{"insert again", func() error { return writer.InsertCollector(ctx, c) }},
		{"delete all", func() error { _, err := writer.DeleteAllCollectors(ctx, "u1", "a1"); return err }},
	}
	for _, step := range steps {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		requireChange(t, changes, step.name)
	}

	// The writer's feed receives its own notifications too, and skips them:
	// a write after them is counted exactly once.
	if err := writer.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "marker")); err != nil {
		t.Fatalf("insert marker: %v", err)
	}
	requireChange(t, changes, "insert marker")
	if got := writerCalls.Load(); got != int64(len(steps)+1) {
		t.Errorf("writer's listener ran %d times for %d writes", got, len(steps)+1)
	}
	if extra := len(changes); extra != 0 {
		t.Errorf("reader's listener ran %d extra times", extra)
	}
}

// TestPostgres_ChangeFeedFailedWrite expects no notification from writes that
// change nothing or roll back.
func TestPostgres_ChangeFeedFailedWrite(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	writer := openTestPostgres(t, dsn, schema)
	reader := openTestPostgres(t, dsn, schema)
	ctx := context.Background()

	changes := make(chan struct{}, 100)
	reader.OnChange(func() { changes <- struct{}{} })

	c := storetest.NewCollector("u1", "a1", "c1")
	if err := writer.InsertCollector(ctx, c); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	requireChange(t, changes, "insert")

	if err := writer.InsertCollector(ctx, c); !errors.Is(err, collector.ErrAlreadyExists) {
		t.Fatalf("duplicate InsertCollector error = %v, want ErrAlreadyExists", err)
	}
	if err := writer.UpdateCollector(ctx, storetest.NewCollector("u1", "a1", "missing")); !errors.Is(err, collector.ErrNotFound) {
		t.Fatalf("UpdateCollector of a missing collector error = %v, want ErrNotFound", err)
	}
	if err := writer.DeleteCollector(ctx, "u1", "a1", "missing"); !errors.Is(err, collector.ErrNotFound) {
		t.Fatalf("DeleteCollector of a missing collector error = %v, want ErrNotFound", err)
	}
	if _, err := writer.DeleteAllCollectors(ctx, "u1", "empty"); err != nil {
		t.Fatalf("DeleteAllCollectors of an empty app: %v", err)
	}

	// A marker write shows that every earlier notification has arrived,
	// because PostgreSQL delivers notifications in commit order.
	if err := writer.DeleteCollector(ctx, "u1", "a1", "c1"); err != nil {
		t.Fatalf("DeleteCollector: %v", err)
	}
	requireChange(t, changes, "delete marker")
	if extra := len(changes); extra != 0 {
		t.Errorf("reader's listener ran %d times for writes that changed nothing", extra)
	}
}

// TestPostgres_ChangeFeedOtherSchema expects no notification from a store on
// another schema of the same database.
func TestPostgres_ChangeFeedOtherSchema(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	_, otherSchema := storetest.NewPostgresSchema(t)
	reader := openTestPostgres(t, dsn, schema)
	sameSchema := openTestPostgres(t, dsn, schema)
	otherWriter := openTestPostgres(t, dsn, otherSchema)
	ctx := context.Background()

	changes := make(chan struct{}, 100)
	reader.OnChange(func() { changes <- struct{}{} })

	if err := otherWriter.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "c1")); err != nil {
		t.Fatalf("InsertCollector in the other schema: %v", err)
	}
	if err := sameSchema.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "marker")); err != nil {
		t.Fatalf("InsertCollector in the same schema: %v", err)
	}

	// The marker was committed after the other schema's write, so its
	// notification arrives after the other one would have.
	requireChange(t, changes, "marker")
	if extra := len(changes); extra != 0 {
		t.Errorf("reader's listener ran %d times for writes to another schema", extra)
	}
}

// TestPostgres_ChangeFeedReconnect ends the feed's connection on the server,
// as a failover or a restart does. The feed must reconnect, run the
// listeners once for the changes it may have missed, and then report the
// changes of other stores again.
func TestPostgres_ChangeFeedReconnect(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	const appName = "collectord-feed-reconnect-test"
	reader := openTestPostgres(t, withParam(t, dsn, "application_name", appName), schema)
	writer := openTestPostgres(t, dsn, schema)
	ctx := context.Background()

	changes := make(chan struct{}, 100)
	reader.OnChange(func() { changes <- struct{}{} })

	terminated := queryStrings(t, dsn, schema, `SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity
WHERE application_name = '`+appName+`' AND query LIKE 'LISTEN%'`)
	if len(terminated) != 1 || terminated[0] != "true" {
		t.Fatalf("terminated feed connections = %v, want one", terminated)
	}

	requireChange(t, changes, "reconnect")
	if err := writer.InsertCollector(ctx, storetest.NewCollector("u1", "a1", "after")); err != nil {
		t.Fatalf("InsertCollector: %v", err)
	}
	requireChange(t, changes, "insert after reconnect")
	if extra := len(changes); extra != 0 {
		t.Errorf("reader's listener ran %d extra times", extra)
	}
}

// TestPostgres_BlobsShared stores the same image from two stores, as two
// pods do, and deletes the inputs one by one: the bytes stay readable while
// one input names them and are gone after the last one.
func TestPostgres_BlobsShared(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	a := openTestPostgres(t, dsn, schema)
	b := openTestPostgres(t, dsn, schema)
	ctx := context.Background()
	image := storetest.RandomBytes(t, 8<<10)

	first := &clarifaipb.Input{Id: "first", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}}
	second := &clarifaipb.Input{Id: "second", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}, Video: &clarifaipb.Video{Base64: image}}}
	if errs := a.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{first}); errs[0] != nil {
		t.Fatalf("InsertInputs through a: %v", errs[0])
	}
	if errs := b.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{second}); errs[0] != nil {
		t.Fatalf("InsertInputs through b: %v", errs[0])
	}
	if got := queryStrings(t, dsn, schema, `SELECT refs::text FROM blobs`); len(got) != 1 || got[0] != "3" {
		t.Errorf("blob rows = %v, want one row with 3 references", got)
	}

	if err := a.DeleteInput(ctx, "u1", "a1", "second"); err != nil {
		t.Fatalf("DeleteInput second: %v", err)
	}
	got, err := b.GetInput(ctx, "u1", "a1", "first")
	if err != nil {
		t.Fatalf("GetInput first: %v", err)
	}
	if !bytes.Equal(got.GetData().GetImage().GetBase64(), image) {
		t.Errorf("image bytes differ after the other input was deleted")
	}

	if err := b.DeleteInput(ctx, "u1", "a1", "first"); err != nil {
		t.Fatalf("DeleteInput first: %v", err)
	}
	if got := queryStrings(t, dsn, schema, `SELECT sha256 FROM blobs`); len(got) != 0 {
		t.Errorf("blob rows after the last input was deleted = %d, want 0", len(got))
	}
}

// TestPostgres_DuplicateInputKeepsBlobRefs inserts an input whose ID is
// taken: its bytes must not add a reference, or the blob would outlive
// every input that names it.
func TestPostgres_DuplicateInputKeepsBlobRefs(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	s := openTestPostgres(t, dsn, schema)
	ctx := context.Background()
	image := storetest.RandomBytes(t, 1024)

	in := func() *clarifaipb.Input {
		return &clarifaipb.Input{Id: "in1", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: image}}}
	}
	if errs := s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in()}); errs[0] != nil {
		t.Fatalf("InsertInputs: %v", errs[0])
	}
	if errs := s.InsertInputs(ctx, "u1", "a1", []*clarifaipb.Input{in()}); errs[0] == nil {
		t.Fatal("InsertInputs of a taken ID succeeded")
	}
	if got := queryStrings(t, dsn, schema, `SELECT refs::text FROM blobs`); len(got) != 1 || got[0] != "1" {
		t.Errorf("blob rows = %v, want one row with 1 reference", got)
	}

	if err := s.DeleteInput(ctx, "u1", "a1", "in1"); err != nil {
		t.Fatalf("DeleteInput: %v", err)
	}
	if got := queryStrings(t, dsn, schema, `SELECT sha256 FROM blobs`); len(got) != 0 {
		t.Errorf("blob rows after the delete = %d, want 0", len(got))
	}
}

// TestPostgres_ConcurrentSharedBlobs inserts and deletes inputs with the
// same bytes from many goroutines: no batch may fail (no deadlock), and the
// reference count must end equal to the inputs left.
func TestPostgres_ConcurrentSharedBlobs(t *testing.T) {
	dsn, schema := storetest.NewPostgresSchema(t)
	s := openTestPostgres(t, dsn, schema)
	ctx := context.Background()
	shared := [][]byte{storetest.RandomBytes(t, 512), storetest.RandomBytes(t, 512), storetest.RandomBytes(t, 512)}
	const workers, rounds = 8, 10

	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				// Each batch names the shared blobs in an order of its own.
				var batch []*clarifaipb.Input
				for k := range shared {
					data := shared[(w+k)%len(shared)]
					id := idFor(w, r*len(shared)+k)
					batch = append(batch, &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: data}}})
				}
				for _, err := range s.InsertInputs(ctx, "u1", "a1", batch) {
					if err != nil {
						errs <- err
					}
				}
				if err := s.DeleteInput(ctx, "u1", "a1", batch[0].GetId()); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent input write: %v", err)
	}

	left := queryStrings(t, dsn, schema, `SELECT COUNT(*)::text FROM inputs`)
	refs := queryStrings(t, dsn, schema, `SELECT COALESCE(SUM(refs), 0)::text FROM blobs`)
	if left[0] != refs[0] {
		t.Errorf("%s inputs left but blobs hold %s references", left[0], refs[0])
	}
}

func requireChange(t *testing.T, changes <-chan struct{}, step string) {
	t.Helper()
	// A generous bound for a notification on loopback: this only guards
	// against a hang, it measures nothing.
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no change reported within 10 s", step)
	}
}

// queryStrings runs a query in schema and returns the first column of each
// row.
func queryStrings(t *testing.T, dsn, schema, sql string) []string {
	t.Helper()
	conn := connectIn(t, dsn, schema)
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func execIn(t *testing.T, dsn, schema, sql string) {
	t.Helper()
	conn := connectIn(t, dsn, schema)
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func connectIn(t *testing.T, dsn, schema string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), storetest.WithSearchPath(t, dsn, schema))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func withParam(t *testing.T, dsn, name, value string) string {
	t.Helper()
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + name + "=" + value
}

func uniq(values []string) map[string]bool {
	out := map[string]bool{}
	for _, v := range values {
		out[v] = true
	}
	return out
}
