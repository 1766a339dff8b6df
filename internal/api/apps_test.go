package api_test

import (
	"net/http"
	"strings"
	"testing"

	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

func TestREST_GetUser(t *testing.T) {
	env := newTestEnv(t)

	me := env.do(http.MethodGet, "/v2/users/me", keyHeader(aliceReadOnly), "")
	me.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(me.json, "user", "id"); got != "alice" {
		t.Errorf("user.id = %v, want alice", got)
	}
	byID := env.do(http.MethodGet, "/v2/users/alice", keyHeader(alicePAT), "")
	byID.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)

	env.do(http.MethodGet, "/v2/users/bob", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
	env.do(http.MethodGet, "/v2/users/me", "Key wrong", "").
		requireStatus(t, http.StatusUnauthorized, pb.StatusCode_CONN_KEY_NOT_FOUND)
}

func TestREST_Apps(t *testing.T) {
	env := newTestEnv(t)

	post := env.do(http.MethodPost, "/v2/users/me/apps", keyHeader(alicePAT),
		`{"apps":[{"id":"new-app","name":"New","description":"for tests"}]}`)
	post.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(post.list(t, "apps")[0], "user_id"); got != "alice" {
		t.Errorf("apps[0].user_id = %v, want alice", got)
	}

	dup := env.do(http.MethodPost, "/v2/users/me/apps", keyHeader(alicePAT), `{"apps":[{"id":"new-app"}]}`)
	dup.requireStatus(t, http.StatusConflict, pb.StatusCode_DATABASE_DUPLICATE_KEY)

	byAppKey := env.do(http.MethodPost, "/v2/users/me/apps", keyHeader(aliceAppKey), `{"apps":[{"id":"x"}]}`)
	byAppKey.requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)

	badID := env.do(http.MethodPost, "/v2/users/me/apps", keyHeader(alicePAT), `{"apps":[{"id":"ok-1"},{"id":"no/slash"}]}`)
	badID.requireStatus(t, http.StatusBadRequest, pb.StatusCode_CONN_INVALID_REQUEST)
	if !strings.Contains(badID.details(), "apps[1]") {
		t.Errorf("details %q do not name the item", badID.details())
	}
	env.do(http.MethodGet, "/v2/users/me/apps/ok-1", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusNotFound, pb.StatusCode_CONN_DOES_NOT_EXIST)

	get := env.do(http.MethodGet, "/v2/users/me/apps/new-app", keyHeader(alicePAT), "")
	get.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(get.json, "app", "description"); got != "for tests" {
		t.Errorf("app.description = %v", got)
	}

	list := env.do(http.MethodGet, "/v2/users/me/apps?per_page=2", keyHeader(alicePAT), "")
	list.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := ids(t, list, "apps"); got != "dest,other" {
		t.Errorf("first page of apps = %s, want dest,other", got)
	}

	appKeyList := env.do(http.MethodGet, "/v2/apps", keyHeader(aliceAppKey), "")
	if got := ids(t, appKeyList, "apps"); got != "dest" {
		t.Errorf("apps visible to an app key = %s, want dest", got)
	}
	appKeyGet := env.do(http.MethodGet, "/v2/app", keyHeader(aliceAppKey), "")
	appKeyGet.requireStatus(t, http.StatusOK, pb.StatusCode_SUCCESS)
	if got := field(appKeyGet.json, "app", "id"); got != "dest" {
		t.Errorf("/v2/app with an app key = %v, want dest", got)
	}

	env.do(http.MethodGet, "/v2/users/bob/apps", keyHeader(alicePAT), "").
		requireStatus(t, http.StatusForbidden, pb.StatusCode_CONN_INSUFFICIENT_SCOPES)
}
