package model

import (
	"strings"
	"unicode"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// Word counts that bound the "short" and "long" concepts of text-stats.
const (
	shortTextMaxWords = 12
	longTextMinWords  = 60
)

// Payload sizes that bound the concepts of echo-size.
const (
	smallPayloadMaxBytes  = 1 << 10
	mediumPayloadMaxBytes = 1 << 20
)

// predictTextStats describes text.raw: its length ("short", "medium" or
// "long", value 1), and when present the share of question sentences
// ("question"), of uppercase letters ("uppercase") and of digits among the
// non-space characters ("digits").
func predictTextStats(data *clarifaipb.Data) ([]*clarifaipb.Concept, error) {
	raw := data.GetText().GetRaw()
	if strings.TrimSpace(raw) == "" {
		if data.GetText().GetUrl() != "" {
			return nil, errURLNotFetched
		}
		return nil, &inputError{message: "input has no text; this model reads data.text.raw"}
	}

	concepts := []*clarifaipb.Concept{lengthConcept(len(strings.Fields(raw)))}
	stats := countText(raw)
	if stats.sentences > 0 && stats.questions > 0 {
		concepts = append(concepts, newConcept("question", float64(stats.questions)/float64(stats.sentences)))
	}
	if stats.letters > 0 && stats.upper > 0 {
		concepts = append(concepts, newConcept("uppercase", float64(stats.upper)/float64(stats.letters)))
	}
	if stats.nonSpace > 0 && stats.digits > 0 {
		concepts = append(concepts, newConcept("digits", float64(stats.digits)/float64(stats.nonSpace)))
	}
	sortConcepts(concepts)
	return concepts, nil
}

// lengthConcept names the length bucket of a text of words words.
func lengthConcept(words int) *clarifaipb.Concept {
	switch {
	case words <= shortTextMaxWords:
		return newConcept("short", 1)
	case words >= longTextMinWords:
		return newConcept("long", 1)
	default:
		return newConcept("medium", 1)
	}
}

// textStats are the character and sentence counts of a text.
type textStats struct {
	letters, upper, digits, nonSpace int
	// sentences counts runs of text ended by '.', '!' or '?' or by the end
	// of the text; questions counts those ended by '?'.
	sentences, questions int
}

func countText(raw string) textStats {
	var stats textStats
	inSentence := false
	for _, r := range raw {
		if !unicode.IsSpace(r) {
			stats.nonSpace++
		}
		if unicode.IsLetter(r) {
			stats.letters++
			if unicode.IsUpper(r) {
				stats.upper++
			}
		}
		if unicode.IsDigit(r) {
			stats.digits++
		}

		switch {
		case r == '.' || r == '!' || r == '?':
			if inSentence {
				stats.sentences++
				if r == '?' {
					stats.questions++
				}
			}
			inSentence = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			inSentence = true
		}
	}
	if inSentence {
		stats.sentences++
	}
	return stats
}

// predictEchoSize returns one concept naming the size of the inline payload
// (image, video and audio bytes plus text.raw): "empty", "small" (under
// 1 KiB), "medium" (under 1 MiB) or "large".
func predictEchoSize(data *clarifaipb.Data) ([]*clarifaipb.Concept, error) {
	size := len(data.GetImage().GetBase64()) + len(data.GetVideo().GetBase64()) +
		len(data.GetAudio().GetBase64()) + len(data.GetText().GetRaw())
	hasURL := data.GetImage().GetUrl() != "" || data.GetVideo().GetUrl() != "" ||
		data.GetAudio().GetUrl() != "" || data.GetText().GetUrl() != ""
	if size == 0 && hasURL {
		return nil, errURLNotFetched
	}

	var name string
	switch {
	case size == 0:
		name = "empty"
	case size < smallPayloadMaxBytes:
		name = "small"
	case size < mediumPayloadMaxBytes:
		name = "medium"
	default:
		name = "large"
	}
	return []*clarifaipb.Concept{newConcept(name, 1)}, nil
}

// newConcept returns a concept whose ID and name are both name.
func newConcept(name string, value float64) *clarifaipb.Concept {
	return &clarifaipb.Concept{Id: name, Name: name, Value: float32(value)}
}
