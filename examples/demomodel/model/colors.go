package model

import (
	"bytes"
	"cmp"
	"fmt"
	"image"
	_ "image/gif" // registers GIF for image.Decode
	_ "image/jpeg"
	_ "image/png"
	"slices"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// maxImagePixels rejects images whose header declares more pixels than this
// before decoding them, so a small file cannot claim gigabytes of memory.
const maxImagePixels = 64 << 20

// maxSampledPixels caps the pixels classified per image; larger images are
// sampled on a regular grid.
const maxSampledPixels = 256 * 256

// minColorShare drops colours that cover less than this share of the image.
const minColorShare = 0.01

// predictColors returns the named colours of an image with their share of
// the opaque pixels, largest first.
func predictColors(data *clarifaipb.Data) ([]*clarifaipb.Concept, error) {
	img, err := decodeImage(data.GetImage())
	if err != nil {
		return nil, err
	}

	counts, total := countColors(img)
	concepts := make([]*clarifaipb.Concept, 0, len(counts))
	for name, n := range counts {
		share := float64(n) / float64(total)
		if share < minColorShare {
			continue
		}
		concepts = append(concepts, newConcept(name, share))
	}
	sortConcepts(concepts)
	return concepts, nil
}

// decodeImage decodes the inline bytes of a PNG, JPEG or GIF image.
func decodeImage(img *clarifaipb.Image) (image.Image, error) {
	if len(img.GetBase64()) == 0 {
		if img.GetUrl() != "" {
			return nil, errURLNotFetched
		}
		return nil, &inputError{message: "input has no image; this model reads data.image.base64"}
	}

	config, _, err := image.DecodeConfig(bytes.NewReader(img.GetBase64()))
	if err != nil {
		return nil, &inputError{message: fmt.Sprintf("image could not be decoded as PNG, JPEG or GIF: %v", err)}
	}
	if pixels := int64(config.Width) * int64(config.Height); pixels > maxImagePixels {
		return nil, &inputError{message: fmt.Sprintf("image of %dx%d pixels is over the %d-pixel limit", config.Width, config.Height, maxImagePixels)}
	}

	decoded, _, err := image.Decode(bytes.NewReader(img.GetBase64()))
	if err != nil {
		return nil, &inputError{message: fmt.Sprintf("image could not be decoded as PNG, JPEG or GIF: %v", err)}
	}
	return decoded, nil
}

// countColors counts sampled opaque pixels per colour name. total is the
// number of pixels counted; fully transparent pixels are skipped.
func countColors(img image.Image) (counts map[string]int, total int) {
	bounds := img.Bounds()
	step := 1
	for (bounds.Dx()/step)*(bounds.Dy()/step) > maxSampledPixels {
		step++
	}

	counts = make(map[string]int)
	for y := bounds.Min.Y; y < bounds.Max.Y; y += step {
		for x := bounds.Min.X; x < bounds.Max.X; x += step {
			r, g, b, a := img.At(x, y).RGBA()
			if a == 0 {
				continue
			}
			// Undo the alpha premultiplication so that translucent pixels
			// keep their hue.
			name := colorName(float64(r)/float64(a), float64(g)/float64(a), float64(b)/float64(a))
			counts[name]++
			total++
		}
	}
	return counts, total
}

// colorName buckets an RGB colour (components in [0,1]) into one of twelve
// names by its hue, saturation and lightness.
func colorName(r, g, b float64) string {
	hue, saturation, lightness := toHSL(r, g, b)

	switch {
	case lightness < 0.12:
		return "black"
	case lightness > 0.93:
		return "white"
	case saturation < 0.15:
		return "gray"
	}

	switch {
	case hue < 15 || hue >= 345:
		if lightness > 0.7 {
			return "pink"
		}
		return "red"
	case hue < 45:
		if lightness < 0.35 {
			return "brown"
		}
		return "orange"
	case hue < 70:
		return "yellow"
	case hue < 165:
		return "green"
	case hue < 195:
		return "cyan"
	case hue < 255:
		return "blue"
	case hue < 290:
		return "purple"
	default:
		if lightness < 0.35 {
			return "purple"
		}
		return "pink"
	}
}

// toHSL converts RGB in [0,1] to hue in degrees [0,360), saturation and
// lightness in [0,1].
func toHSL(r, g, b float64) (hue, saturation, lightness float64) {
	maxC := max(r, g, b)
	minC := min(r, g, b)
	lightness = (maxC + minC) / 2
	delta := maxC - minC
	if delta == 0 {
		return 0, 0, lightness
	}

	if lightness < 0.5 {
		saturation = delta / (maxC + minC)
	} else {
		saturation = delta / (2 - maxC - minC)
	}

	switch maxC {
	case r:
		hue = 60 * ((g - b) / delta)
	case g:
		hue = 60 * ((b-r)/delta + 2)
	default:
		hue = 60 * ((r-g)/delta + 4)
	}
	if hue < 0 {
		hue += 360
	}
	return hue, saturation, lightness
}

// sortConcepts orders concepts by value, largest first, then by ID, so that
// equal inputs give equal responses.
func sortConcepts(concepts []*clarifaipb.Concept) {
	slices.SortFunc(concepts, func(a, b *clarifaipb.Concept) int {
		if c := cmp.Compare(b.GetValue(), a.GetValue()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetId(), b.GetId())
	})
}
