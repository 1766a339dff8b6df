package model

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

// halvesImage returns a width x height image whose left half is left and
// right half is right.
func halvesImage(width, height int, left, right color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			if x < width/2 {
				img.Set(x, y, left)
			} else {
				img.Set(x, y, right)
			}
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatalf("png.Encode: %v", err)
	}
	return buf.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatalf("jpeg.Encode: %v", err)
	}
	return buf.Bytes()
}

func encodeGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gif.Encode(&buf, img, nil); err != nil {
		t.Fatalf("gif.Encode: %v", err)
	}
	return buf.Bytes()
}

func imageInput(id string, encoded []byte) *clarifaipb.Input {
	return &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Image: &clarifaipb.Image{Base64: encoded}}}
}

func textInput(id, raw string) *clarifaipb.Input {
	return &clarifaipb.Input{Id: id, Data: &clarifaipb.Data{Text: &clarifaipb.Text{Raw: raw}}}
}

// conceptValues maps concept IDs to values.
func conceptValues(output *clarifaipb.Output) map[string]float32 {
	values := make(map[string]float32)
	for _, c := range output.GetData().GetConcepts() {
		values[c.GetId()] = c.GetValue()
	}
	return values
}

var (
	pureRed   = color.RGBA{R: 220, G: 20, B: 20, A: 255}
	pureBlue  = color.RGBA{R: 20, G: 40, B: 220, A: 255}
	pureGreen = color.RGBA{R: 30, G: 200, B: 40, A: 255}
)
