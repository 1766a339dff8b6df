package predict

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// fastPathResult is what decodeRESTRequest makes of a body, or nil when it
// leaves the body to protojson.
func fastPathResult(body []byte) *clarifaipb.PostModelOutputsRequest {
	message := &clarifaipb.PostModelOutputsRequest{}
	if !decodeRESTRequest(body, message) {
		return nil
	}
	return message
}

// requireFastPathMatchesProtojson fails unless the fast path, when it takes
// body, decodes it exactly as protojson does, and unless ParseRequest fails
// exactly when protojson does. It reports whether the fast path took body.
func requireFastPathMatchesProtojson(t *testing.T, body []byte) bool {
	t.Helper()
	want := &clarifaipb.PostModelOutputsRequest{}
	wantErr := jsonOptions.Unmarshal(body, want)

	_, err := ParseRequest(restRoute, body, "")
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("ParseRequest error = %v, protojson error = %v\nbody: %.600s", err, wantErr, body)
	}
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseRequest error = %v, want ErrMalformed", err)
	}

	got := fastPathResult(body)
	if got == nil {
		return false
	}
	if wantErr != nil {
		t.Fatalf("fast path decoded a body protojson rejects (%v)\nbody: %.600s", wantErr, body)
	}
	// Deterministic encodings compare NaN concept values, which proto.Equal
	// never finds equal.
	if !bytes.Equal(deterministicRequest(t, got), deterministicRequest(t, want)) {
		t.Fatalf("fast path differs from protojson\n got: %.600v\nwant: %.600v\nbody: %.600s", got, want, body)
	}
	return true
}

func deterministicRequest(t *testing.T, message *clarifaipb.PostModelOutputsRequest) []byte {
	t.Helper()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(message)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return data
}

// bodyGenerator writes REST predict bodies in the shapes clients send. It
// also writes the cases where a faster decoder could differ from protojson.
// These are both name forms, names in the wrong case, duplicates, nulls,
// every base64 variant, escapes, long base64 strings outside media fields,
// invalid values and broken JSON.
type bodyGenerator struct {
	random *rand.Rand
	out    strings.Builder
	// wild is set for half the bodies, which then get odd and invalid parts.
	// The other bodies are what well-behaved clients send.
	wild bool
}

func (g *bodyGenerator) chance(percent int) bool { return g.random.IntN(100) < percent }

// odd is chance for the parts that only wild bodies get.
func (g *bodyGenerator) odd(percent int) bool { return g.wild && g.chance(percent) }

func (g *bodyGenerator) pick(values ...string) string { return values[g.random.IntN(len(values))] }

// oddPick picks one of values, or for wild bodies sometimes one of oddValues.
func (g *bodyGenerator) oddPick(values []string, oddValues ...string) string {
	if g.odd(20) {
		return g.pick(oddValues...)
	}
	return g.pick(values...)
}

func (g *bodyGenerator) space() {
	if g.chance(15) {
		g.out.WriteString(g.pick(" ", "\n", "\t", " \r\n "))
	}
}

func (g *bodyGenerator) name(forms ...string) {
	name := g.pick(forms...)
	if g.odd(3) {
		name = strings.ToUpper(name[:1]) + name[1:]
	}
	if g.chance(3) && strings.HasPrefix(name, "b") {
		name = `\u0062` + name[1:]
	}
	g.space()
	g.out.WriteString(`"` + name + `"`)
	g.space()
	g.out.WriteString(":")
	g.space()
}

// object writes an object whose members are written by the given funcs in
// random order, sometimes one of them twice.
func (g *bodyGenerator) object(members ...func()) {
	g.random.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	if len(members) > 0 && g.odd(4) {
		members = append(members, members[0])
	}
	g.out.WriteString("{")
	for i, member := range members {
		if i > 0 {
			g.out.WriteString(",")
		}
		member()
	}
	g.space()
	g.out.WriteString("}")
}

// some keeps each member with the given chance.
func (g *bodyGenerator) some(percent int, members ...func()) []func() {
	var kept []func()
	for _, member := range members {
		if g.chance(percent) {
			kept = append(kept, member)
		}
	}
	return kept
}

func (g *bodyGenerator) shortString() {
	g.out.WriteString(strconv.Quote(g.pick("", "a", "in-1", "https://img.example/a.jpg", "Grüße", "x\ty", "clarifai")))
}

// base64Text returns a base64 text of random length in a random variant.
func (g *bodyGenerator) base64Text() string {
	size := g.random.IntN(40)
	if g.chance(60) {
		size = 150 + g.random.IntN(3000)
	}
	raw := make([]byte, size)
	for i := range raw {
		raw[i] = byte(g.random.Uint32())
	}
	encodings := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
	text := encodings[g.random.IntN(len(encodings))].EncodeToString(raw)

	if g.odd(12) && len(text) > 0 {
		// A corruption anywhere, often past the first 32-character blocks.
		at := g.random.IntN(len(text))
		bad := g.pick("=", "*", " ", "é", "-", "_", "+", "/", "==", "A")
		text = text[:at] + bad + text[at+1:]
	}
	if g.odd(5) {
		text += g.pick("=", "==", "A", "AA", "AAA")
	}
	return text
}

// base64Value writes a JSON value for a bytes field: mostly a plain
// string, sometimes with escapes, control characters, or not a string.
func (g *bodyGenerator) base64Value() {
	text := g.base64Text()
	switch {
	case g.odd(4):
		g.out.WriteString(g.pick("null", "12", "true", "[]", "{}"))
		return
	case g.chance(4) && len(text) > 8:
		// Escapes that decode to the same text.
		text = strings.Replace(text, "/", `\/`, 1)
		text = text[:4] + `\u0041` + text[5:]
	case g.odd(3) && len(text) > 8:
		text = text[:4] + g.pick(`\n`, `\r\n`, `\t`) + text[4:]
	case g.odd(2) && len(text) > 8:
		// A raw control character, which JSON forbids.
		text = text[:4] + g.pick("\n", "\r", "\x00") + text[4:]
	}
	g.out.WriteString(`"` + text + `"`)
}

// stringValue writes a value for a string field, sometimes a long base64
// text that the fast path would lift.
func (g *bodyGenerator) stringValue() {
	switch {
	case g.odd(8):
		g.out.WriteString(`"` + base64.StdEncoding.EncodeToString(make([]byte, 300+g.random.IntN(300))) + `"`)
	case g.odd(3):
		g.out.WriteString(g.pick("null", "5"))
	default:
		g.shortString()
	}
}

func (g *bodyGenerator) media() {
	g.object(g.some(60,
		func() { g.name("url"); g.stringValue() },
		func() { g.name("base64"); g.base64Value() },
		func() {
			g.name("allow_duplicate_url", "allowDuplicateUrl")
			g.out.WriteString(g.oddPick([]string{"true", "false", "null"}, `"x"`))
		},
		func() { g.name("hosted"); g.out.WriteString(`{"prefix":"p"}`) },
	)...)
}

func (g *bodyGenerator) jsonValue(depth int) {
	if depth > 3 || g.chance(40) {
		g.out.WriteString(g.pick(`"v"`, "1", "-2.5e3", "true", "null", `""`, `"NaN"`))
		if g.odd(5) {
			g.out.WriteString(`"` + g.base64Text() + `"`)
		}
		return
	}
	if g.chance(30) {
		g.out.WriteString("[")
		for i := range g.random.IntN(3) {
			if i > 0 {
				g.out.WriteString(",")
			}
			g.jsonValue(depth + 1)
		}
		g.out.WriteString("]")
		return
	}
	g.jsonObject(depth)
}

// jsonObject writes a random JSON object, for a google.protobuf.Struct.
func (g *bodyGenerator) jsonObject(depth int) {
	var members []func()
	for i := range g.random.IntN(4) {
		key := g.pick("a", "b", "camera", "empty", "base64", "image")
		if !g.odd(20) {
			// Struct rejects a repeated name, which only wild bodies get.
			key += strconv.Itoa(i)
		}
		if g.odd(5) {
			key = base64.StdEncoding.EncodeToString(make([]byte, 200+i))
		}
		members = append(members, func() { g.name(key); g.jsonValue(depth + 1) })
	}
	g.object(members...)
}

func (g *bodyGenerator) data() {
	g.object(g.some(45,
		func() { g.name("image"); g.mediaOrNull() },
		func() { g.name("video"); g.mediaOrNull() },
		func() { g.name("audio"); g.mediaOrNull() },
		func() {
			g.name("text")
			g.object(g.some(60,
				func() { g.name("raw"); g.stringValue() },
				func() { g.name("url"); g.stringValue() },
			)...)
		},
		func() { g.name("metadata"); g.jsonObject(0) },
		func() {
			g.name("concepts")
			g.out.WriteString(`[{"id":"c1","value":` + g.oddPick([]string{"0.5", `"NaN"`, "-1"}, `"x"`, "1e40") + `}]`)
		},
	)...)
}

func (g *bodyGenerator) mediaOrNull() {
	if g.chance(5) {
		g.out.WriteString("null")
		return
	}
	g.media()
}

func (g *bodyGenerator) input() {
	if g.odd(3) {
		g.out.WriteString("null")
		return
	}
	g.object(g.some(60,
		func() { g.name("id"); g.stringValue() },
		func() { g.name("data"); g.data() },
		func() {
			if g.odd(100) {
				g.name("data")
				g.data()
				return
			}
			g.name("settings")
			g.jsonValue(1)
		},
		func() {
			g.name("created_at", "createdAt")
			g.out.WriteString(g.oddPick([]string{`"2024-01-02T03:04:05Z"`, "null"}, `"yesterday"`))
		},
		func() { g.name("dataset_ids", "datasetIds"); g.out.WriteString(`["d1"]`) },
	)...)
}

func (g *bodyGenerator) inputs() {
	if g.odd(5) {
		g.out.WriteString(g.pick("null", "{}", `"x"`))
		return
	}
	g.out.WriteString("[")
	for i := range 1 + g.random.IntN(3) {
		if i > 0 {
			g.out.WriteString(",")
		}
		g.space()
		g.input()
	}
	g.out.WriteString("]")
}

func (g *bodyGenerator) model() {
	g.object(g.some(50,
		func() { g.name("id"); g.stringValue() },
		func() { g.name("model_version", "modelVersion"); g.out.WriteString(`{"id":"v9"}`) },
		func() {
			g.name("output_info", "outputInfo")
			g.object(
				func() { g.name("params"); g.jsonObject(1) },
				func() { g.name("data"); g.data() },
			)
		},
	)...)
}

// body writes one request body.
func (g *bodyGenerator) body() []byte {
	g.out.Reset()
	g.wild = g.chance(50)
	g.space()
	members := []func(){func() { g.name("inputs"); g.inputs() }}
	members = append(members, g.some(35,
		func() {
			g.name("user_app_id", "userAppId")
			g.out.WriteString(g.pick(`{"user_id":"u","app_id":"a"}`, `{"userId":"u","appId":"a"}`, `{"user_id":"u","app_id":null}`, "null"))
		},
		func() { g.name("model_id", "modelId"); g.stringValue() },
		func() { g.name("version_id", "versionId"); g.stringValue() },
		func() { g.name("model"); g.model() },
		func() { g.name("runner_selector", "use_predict_cache"); g.jsonValue(0) },
	)...)
	g.object(members...)
	g.space()

	text := g.out.String()
	switch {
	case g.odd(6):
		text = text[:g.random.IntN(len(text))]
	case g.odd(4):
		text += g.pick("x", "{}", ",")
	}
	return []byte(text)
}

// TestRESTFastPath_MatchesProtojson decodes generated bodies with the fast
// path and with protojson, and checks that the fast path takes most of the
// well-formed ones.
func TestRESTFastPath_MatchesProtojson(t *testing.T) {
	generator := &bodyGenerator{random: rand.New(rand.NewPCG(7, 11))}
	bodies := 3000
	if testing.Short() {
		bodies = 300
	}

	taken := 0
	for range bodies {
		if requireFastPathMatchesProtojson(t, generator.body()) {
			taken++
		}
	}
	// A generator change that stops exercising the fast path must not pass
	// silently.
	if taken < bodies/10 {
		t.Fatalf("fast path took %d of %d bodies, want at least a tenth", taken, bodies)
	}
	t.Logf("fast path took %d of %d bodies", taken, bodies)
}

// TestRESTFastPath_SeedCorpus runs the differential check on every seed of
// the REST fuzz targets.
func TestRESTFastPath_SeedCorpus(t *testing.T) {
	for _, target := range []string{"FuzzParseRequestREST", "FuzzRESTFastPathMatchesProtojson"} {
		paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range paths {
			requireFastPathMatchesProtojson(t, readSeedBody(t, path))
		}
	}
}

// readSeedBody returns the []byte value of a one-value seed corpus file.
func readSeedBody(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("%s: not a one-value []byte seed", path)
	}
	value, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(value)
}

// TestRESTFastPath_Taken checks that the bodies clients send most take the
// fast path, with every media kind and the members protojson decodes.
func TestRESTFastPath_Taken(t *testing.T) {
	image := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("image"), 400))
	video := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 500))
	audio := base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfe}, 301))

	bodies := map[string]string{
		"one image": string(restPredictOfSize(64 << 10)),
		"every media kind": `{"userAppId":{"userId":"u","appId":"a"},"model":{"id":"m","model_version":{"id":"v"},"output_info":{"params":{"max_concepts":3}}},"inputs":[` +
			`{"id":"i1","data":{"image":{"base64":"` + image + `","allow_duplicate_url":true},"metadata":{"a":{"b":[1,{}]},"empty":{}}}},` +
			`{"data":{"video":{"base64":"` + video + `"},"concepts":[{"id":"c","value":1}]}},` +
			`{"data":{"audio":{"base64":"` + audio + `"},"text":{"raw":"hi"}}}]}`,
		"gzip": string(gzipBytes(t, restPredictOfSize(4<<10))),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			plain := []byte(body)
			if bytes.HasPrefix(plain, gzipMagic) {
				var err error
				if plain, err = gunzip(plain, MaxDecompressedBytes); err != nil {
					t.Fatal(err)
				}
			}
			if !requireFastPathMatchesProtojson(t, plain) {
				t.Fatalf("fast path did not take the body")
			}
			if _, err := ParseRequest(restRoute, []byte(body), ""); err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
		})
	}
}

// TestRESTFastPath_LiftedElsewhere checks bodies whose long base64 strings
// sit where protojson keeps them as text or drops them: the fast path must
// leave them to protojson.
func TestRESTFastPath_LiftedElsewhere(t *testing.T) {
	long := base64.StdEncoding.EncodeToString(make([]byte, 600))
	media := `{"image":{"base64":"` + long + `"}}`
	bodies := map[string]string{
		"text raw":          `{"inputs":[{"data":{"text":{"raw":"` + long + `"}}}]}`,
		"image url":         `{"inputs":[{"data":{"image":{"url":"` + long + `"}}}]}`,
		"metadata value":    `{"inputs":[{"data":{"metadata":{"k":"` + long + `"}}}]}`,
		"metadata name":     `{"inputs":[{"data":{"metadata":{"` + long + `":1}}}]}`,
		"unknown field":     `{"extra":"` + long + `","inputs":[{"data":` + media + `}]}`,
		"model output data": `{"model":{"output_info":{"data":` + media + `}},"inputs":[]}`,
		"wrong name case":   `{"inputs":[{"data":{"Image":{"base64":"` + long + `"}}}]}`,
		"member name":       `{"inputs":[{"data":{"image":{"` + long + `":"QQ=="}}}]}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			if requireFastPathMatchesProtojson(t, []byte(body)) {
				t.Fatalf("fast path took a body whose long string is not media")
			}
		})
	}
}

// TestDecodeBase64_MatchesProtojson compares decodeBase64 with protojson's
// decoding of a bytes field over texts around the 32-character blocks of
// the vector decoder, in every alphabet and padding, with corruptions.
func TestDecodeBase64_MatchesProtojson(t *testing.T) {
	random := rand.New(rand.NewPCG(3, 5))
	encodings := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
	corruptions := []string{"=", "==", "*", " ", "\n", "\r", "-", "_", "+", "/", "é", "\x00", "\\"}

	for size := range 200 {
		for _, encoding := range encodings {
			raw := make([]byte, size)
			for i := range raw {
				raw[i] = byte(random.Uint32())
			}
			text := encoding.EncodeToString(raw)
			requireDecodeLikeProtojson(t, text)

			if len(text) == 0 {
				continue
			}
			for range 4 {
				at := random.IntN(len(text))
				requireDecodeLikeProtojson(t, text[:at]+corruptions[random.IntN(len(corruptions))]+text[at+1:])
				requireDecodeLikeProtojson(t, text[:at]+corruptions[random.IntN(len(corruptions))]+text[at:])

				anyByte := string([]byte{byte(random.Uint32())})
				requireDecodeLikeProtojson(t, text[:at]+anyByte+text[at+1:])
			}
		}
	}
}

// requireDecodeLikeProtojson fails unless decodeBase64 accepts text exactly
// when protojson accepts it as the value of a bytes field, with the same
// bytes.
func requireDecodeLikeProtojson(t *testing.T, text string) {
	t.Helper()
	quoted, err := json.Marshal(text)
	if err != nil {
		t.Fatal(err)
	}
	image := &clarifaipb.Image{}
	wantErr := jsonOptions.Unmarshal([]byte(`{"base64":`+string(quoted)+`}`), image)

	got, err := decodeBase64([]byte(text))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decodeBase64(%q) error = %v, protojson error = %v", text, err, wantErr)
	}
	if err == nil && !bytes.Equal(got, image.GetBase64()) {
		t.Fatalf("decodeBase64(%q) = %x, protojson = %x", text, got, image.GetBase64())
	}
}

// FuzzRESTFastPathMatchesProtojson checks that whatever body the fast path
// decodes, it decodes as protojson does, and that ParseRequest fails
// exactly when protojson does.
func FuzzRESTFastPathMatchesProtojson(f *testing.F) {
	generator := &bodyGenerator{random: rand.New(rand.NewPCG(13, 17))}
	for range 24 {
		f.Add(generator.body())
	}
	long := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1, 2, 3}, 100))
	f.Add([]byte(`{"inputs":[{"id":"a","data":{"image":{"base64":"` + long + `"},"metadata":{"k":{}}}}]}`))
	f.Add([]byte(fmt.Sprintf(`{"inputs":[{"data":{"video":{"base64":"%s"}}},{"data":{"audio":{"base64":"%s"}}}]}`, long, long)))

	f.Fuzz(func(t *testing.T, body []byte) {
		requireFastPathMatchesProtojson(t, body)
	})
}
