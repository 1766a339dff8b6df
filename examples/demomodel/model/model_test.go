package model

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestPredict_Colors(t *testing.T) {
	s := New(Config{})
	req := &clarifaipb.PostModelOutputsRequest{
		Inputs: []*clarifaipb.Input{imageInput("in-1", encodePNG(t, halvesImage(40, 20, pureRed, pureBlue)))},
	}

	resp, httpStatus := s.Predict(Target{ModelID: "colors"}, req)

	if httpStatus != http.StatusOK {
		t.Errorf("HTTP status = %d, want 200", httpStatus)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
		t.Fatalf("status = %v, want SUCCESS", got)
	}
	if len(resp.GetOutputs()) != 1 {
		t.Fatalf("outputs = %d, want 1", len(resp.GetOutputs()))
	}
	values := conceptValues(resp.GetOutputs()[0])
	if len(values) != 2 || values["red"] != 0.5 || values["blue"] != 0.5 {
		t.Errorf("concepts = %v, want red 0.5 and blue 0.5", values)
	}
	for _, c := range resp.GetOutputs()[0].GetData().GetConcepts() {
		if c.GetName() != c.GetId() || c.GetAppId() != DefaultAppID {
			t.Errorf("concept %v: want name equal to id and app_id %q", c, DefaultAppID)
		}
	}
}

func TestPredict_ColorsFormats(t *testing.T) {
	img := halvesImage(16, 16, pureGreen, pureGreen)
	for name, encoded := range map[string][]byte{
		"png":  encodePNG(t, img),
		"jpeg": encodeJPEG(t, img),
		"gif":  encodeGIF(t, img),
	} {
		t.Run(name, func(t *testing.T) {
			req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{imageInput("", encoded)}}
			resp, _ := New(Config{}).Predict(Target{ModelID: "colors"}, req)

			if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
				t.Fatalf("status = %v (%s), want SUCCESS", got, resp.GetOutputs()[0].GetStatus().GetDescription())
			}
			concepts := resp.GetOutputs()[0].GetData().GetConcepts()
			if len(concepts) == 0 || concepts[0].GetId() != "green" || concepts[0].GetValue() < 0.99 {
				t.Errorf("concepts = %v, want green first with a share of at least 0.99", concepts)
			}
		})
	}
}

func TestColorName(t *testing.T) {
	tests := []struct {
		r, g, b float64
		want    string
	}{
		{0, 0, 0, "black"},
		{1, 1, 1, "white"},
		{0.5, 0.5, 0.5, "gray"},
		{0.9, 0.1, 0.1, "red"},
		{1, 0.75, 0.8, "pink"},
		{1, 0.55, 0, "orange"},
		{0.45, 0.25, 0.05, "brown"},
		{0.95, 0.9, 0.1, "yellow"},
		{0.1, 0.8, 0.2, "green"},
		{0.1, 0.8, 0.8, "cyan"},
		{0.1, 0.2, 0.9, "blue"},
		{0.5, 0.1, 0.8, "purple"},
	}
	for _, tt := range tests {
		if got := colorName(tt.r, tt.g, tt.b); got != tt.want {
			t.Errorf("colorName(%v, %v, %v) = %q, want %q", tt.r, tt.g, tt.b, got, tt.want)
		}
	}
}

func TestPredict_TextStats(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{
		textInput("q", "Is it OK? Yes."),
		textInput("long", strings.Repeat("word ", 80)),
		textInput("digits", "room 12"),
	}}

	resp, _ := New(Config{}).Predict(Target{ModelID: "text-stats"}, req)

	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
		t.Fatalf("status = %v, want SUCCESS", got)
	}
	question := conceptValues(resp.GetOutputs()[0])
	// "Is it OK? Yes.": two sentences, one a question; 9 letters, 4 uppercase.
	if question["short"] != 1 || question["question"] != 0.5 || question["uppercase"] != float32(4.0/9.0) {
		t.Errorf("question concepts = %v, want short 1, question 0.5, uppercase 4/9", question)
	}
	if _, ok := question["digits"]; ok {
		t.Errorf("question concepts = %v, want no digits concept", question)
	}
	if long := conceptValues(resp.GetOutputs()[1]); long["long"] != 1 || len(long) != 1 {
		t.Errorf("long concepts = %v, want only long 1", long)
	}
	// "room 12": 6 non-space characters, 2 digits.
	if digits := conceptValues(resp.GetOutputs()[2]); digits["digits"] != float32(2.0/6.0) {
		t.Errorf("digits concepts = %v, want digits 1/3", digits)
	}
}

func TestPredict_EchoSize(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{
		textInput("", "hi"),
		imageInput("", make([]byte, 4096)),
		imageInput("", make([]byte, 2<<20)),
		{Data: &clarifaipb.Data{}},
	}}

	resp, _ := New(Config{}).Predict(Target{ModelID: "echo-size"}, req)

	for i, want := range []string{"small", "medium", "large", "empty"} {
		if got := conceptValues(resp.GetOutputs()[i]); got[want] != 1 || len(got) != 1 {
			t.Errorf("output %d concepts = %v, want only %s 1", i, got, want)
		}
	}
}

func TestPredict_MixedStatus(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{
		imageInput("good", encodePNG(t, halvesImage(8, 8, pureRed, pureRed))),
		{Id: "url", Data: &clarifaipb.Data{Image: &clarifaipb.Image{Url: "https://example.com/cat.jpg"}}},
		imageInput("garbage", []byte("not an image")),
		textInput("text", "no image here"),
	}}

	resp, httpStatus := New(Config{}).Predict(Target{ModelID: "colors"}, req)

	if httpStatus != http.StatusOK {
		t.Errorf("HTTP status = %d, want 200", httpStatus)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_MIXED_STATUS {
		t.Errorf("status = %v, want MIXED_STATUS", got)
	}
	want := []clarifaipb.StatusCode{
		clarifaipb.StatusCode_SUCCESS, clarifaipb.StatusCode_INPUT_FAILED,
		clarifaipb.StatusCode_INPUT_FAILED, clarifaipb.StatusCode_INPUT_FAILED,
	}
	for i, output := range resp.GetOutputs() {
		if got := output.GetStatus().GetCode(); got != want[i] {
			t.Errorf("output %d status = %v, want %v", i, got, want[i])
		}
		if got := output.GetInput().GetId(); got != req.GetInputs()[i].GetId() {
			t.Errorf("output %d input id = %q, want %q", i, got, req.GetInputs()[i].GetId())
		}
	}
	if desc := resp.GetOutputs()[1].GetStatus().GetDescription(); !strings.Contains(desc, "never fetches URLs") {
		t.Errorf("URL input description = %q, want it to say URLs are never fetched", desc)
	}
	if desc := resp.GetOutputs()[2].GetStatus().GetDescription(); !strings.Contains(desc, "could not be decoded") {
		t.Errorf("garbage input description = %q, want a decode failure", desc)
	}
	if len(resp.GetOutputs()[1].GetData().GetConcepts()) != 0 {
		t.Errorf("failed output carries concepts: %v", resp.GetOutputs()[1].GetData())
	}
}

func TestPredict_AllInputsFailed(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{imageInput("", []byte("junk"))}}

	resp, httpStatus := New(Config{}).Predict(Target{ModelID: "colors"}, req)

	if httpStatus != http.StatusBadRequest {
		t.Errorf("HTTP status = %d, want 400", httpStatus)
	}
	if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_FAILURE {
		t.Errorf("status = %v, want FAILURE", got)
	}
}

func TestPredict_ModelNotFound(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("", "hello")}}
	tests := map[string]Target{
		"unknown model": {ModelID: "no-such-model"},
		"other user":    {UserID: "someone", AppID: DefaultAppID, ModelID: "text-stats"},
		"other app":     {UserID: DefaultUserID, AppID: "other", ModelID: "text-stats"},
	}
	for name, target := range tests {
		t.Run(name, func(t *testing.T) {
			resp, httpStatus := New(Config{}).Predict(target, req)

			if httpStatus != http.StatusNotFound {
				t.Errorf("HTTP status = %d, want 404", httpStatus)
			}
			if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_MODEL_DOES_NOT_EXIST {
				t.Errorf("status = %v, want MODEL_DOES_NOT_EXIST", got)
			}
			if len(resp.GetOutputs()) != 0 {
				t.Errorf("outputs = %d, want none", len(resp.GetOutputs()))
			}
		})
	}
}

func TestPredict_InvalidInputCount(t *testing.T) {
	tooMany := make([]*clarifaipb.Input, MaxInputs+1)
	for i := range tooMany {
		tooMany[i] = textInput("", "x")
	}
	for name, inputs := range map[string][]*clarifaipb.Input{"none": nil, "too many": tooMany} {
		t.Run(name, func(t *testing.T) {
			req := &clarifaipb.PostModelOutputsRequest{Inputs: inputs}
			resp, httpStatus := New(Config{}).Predict(Target{ModelID: "text-stats"}, req)

			if httpStatus != http.StatusBadRequest {
				t.Errorf("HTTP status = %d, want 400", httpStatus)
			}
			if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_PREDICT_INVALID_REQUEST {
				t.Errorf("status = %v, want PREDICT_INVALID_REQUEST", got)
			}
		})
	}
}

func TestPredict_ModelFromBody(t *testing.T) {
	s := New(Config{UserID: "u1", AppID: "a1", DefaultVersionID: "v-default"})
	tests := []struct {
		name        string
		req         *clarifaipb.PostModelOutputsRequest
		path        Target
		wantVersion string
	}{
		{
			name:        "model_id without version",
			req:         &clarifaipb.PostModelOutputsRequest{ModelId: "text-stats"},
			wantVersion: "v-default",
		},
		{
			name:        "model and version in model",
			req:         &clarifaipb.PostModelOutputsRequest{Model: &clarifaipb.Model{Id: "text-stats", ModelVersion: &clarifaipb.ModelVersion{Id: "v7"}}},
			wantVersion: "v7",
		},
		{
			name: "path wins over body",
			req: &clarifaipb.PostModelOutputsRequest{
				ModelId: "colors", VersionId: "body-version",
				UserAppId: &clarifaipb.UserAppIDSet{UserId: "other", AppId: "other"},
			},
			path:        Target{UserID: "u1", AppID: "a1", ModelID: "text-stats", VersionID: "path-version"},
			wantVersion: "path-version",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Inputs = []*clarifaipb.Input{textInput("t", "hello there")}
			resp, _ := s.Predict(tt.path, tt.req)

			if got := resp.GetStatus().GetCode(); got != clarifaipb.StatusCode_SUCCESS {
				t.Fatalf("status = %v (%s), want SUCCESS", got, resp.GetStatus().GetDetails())
			}
			model := resp.GetOutputs()[0].GetModel()
			if model.GetId() != "text-stats" || model.GetUserId() != "u1" || model.GetAppId() != "a1" {
				t.Errorf("output model = %v, want text-stats of u1/a1", model)
			}
			if got := model.GetModelVersion().GetId(); got != tt.wantVersion {
				t.Errorf("model version = %q, want %q", got, tt.wantVersion)
			}
		})
	}
}

func TestPredict_Reproducible(t *testing.T) {
	req := &clarifaipb.PostModelOutputsRequest{Inputs: []*clarifaipb.Input{textInput("", "a"), textInput("", "a")}}
	s := New(Config{})

	first, _ := s.Predict(Target{ModelID: "text-stats"}, req)
	second, _ := s.Predict(Target{ModelID: "text-stats"}, req)

	if !proto.Equal(first, second) {
		t.Errorf("responses to the same request differ:\n%v\n%v", first, second)
	}
	outputs := first.GetOutputs()
	if outputs[0].GetId() == "" || outputs[0].GetId() == outputs[1].GetId() {
		t.Errorf("output IDs %q and %q: want distinct, non-empty", outputs[0].GetId(), outputs[1].GetId())
	}
	if in0, in1 := outputs[0].GetInput().GetId(), outputs[1].GetInput().GetId(); in0 == "" || in0 == in1 {
		t.Errorf("generated input IDs %q and %q: want distinct, non-empty", in0, in1)
	}
	if len(first.GetStatus().GetReqId()) != 32 {
		t.Errorf("req_id = %q, want 32 hex digits", first.GetStatus().GetReqId())
	}
	if !proto.Equal(outputs[0].GetInput().GetData(), req.GetInputs()[0].GetData()) {
		t.Errorf("echoed input data = %v, want %v", outputs[0].GetInput().GetData(), req.GetInputs()[0].GetData())
	}
}
