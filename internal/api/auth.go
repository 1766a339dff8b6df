package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/collectord/collectord/internal/identity"
	"github.com/collectord/collectord/internal/localapp"
	pb "github.com/collectord/collectord/internal/pb/clarifaipb"
)

// meUserID is the user ID that stands for the key's own user.
const meUserID = "me"

// authorizationFrom returns the authorization metadata of a gRPC request.
// The REST gateway forwards the Authorization header under the same name.
func authorizationFrom(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return ""
	}
	return strings.TrimSpace(values[0])
}

// authenticate resolves the request's key and checks that it holds every
// scope that rpc requires.
func (s *Server) authenticate(ctx context.Context, rpc rpcSpec) (identity.Key, error) {
	auth := authorizationFrom(ctx)
	if auth == "" {
		return identity.Key{}, fail(pb.StatusCode_CONN_KEY_INVALID,
			`the request has no API key: send the header "Authorization: Key YOUR_KEY"`)
	}

	key, err := s.keys.ResolveKey(ctx, auth)
	switch {
	case errors.Is(err, identity.ErrNoCredentials):
		return identity.Key{}, fail(pb.StatusCode_CONN_KEY_INVALID,
			`the authorization value is not of the form "Key YOUR_KEY"`)
	case errors.Is(err, identity.ErrKeyNotFound):
		return identity.Key{}, fail(pb.StatusCode_CONN_KEY_NOT_FOUND, "the API key is not known to this server")
	case err != nil:
		return identity.Key{}, fmt.Errorf("resolve API key: %w", redactError(err, auth, keySecret(auth)))
	}

	for _, scope := range rpc.scopes {
		if !key.HasScope(scope) {
			return identity.Key{}, fail(pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
				"the API key lacks scope %s, which %s requires", scope, rpc.name)
		}
	}
	return key, nil
}

// keySecret returns the secret part of an authorization value "Key SECRET".
func keySecret(auth string) string {
	_, secret, found := strings.Cut(auth, " ")
	if !found {
		return auth
	}
	return strings.TrimSpace(secret)
}

// redactError returns err with every secret replaced by "****", for errors
// of key resolution whose text could quote the key.
func redactError(err error, secrets ...string) error {
	msg := err.Error()
	for _, secret := range secrets {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "****")
		}
	}
	return errors.New(msg)
}

// resolveUser returns the user a request acts for: the key's own user when
// requested is empty or "me". A key never acts for another user.
func resolveUser(c *call, requested string) (string, error) {
	if requested == "" || requested == meUserID || requested == c.key.UserID {
		c.userID = c.key.UserID
		return c.key.UserID, nil
	}
	return "", fail(pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
		"the API key belongs to user %q and cannot act on user %q", c.key.UserID, requested)
}

// resolveApp returns the existing app a request acts on. An empty app ID
// means the key's app; an app key acts only on its own app.
func (s *Server) resolveApp(ctx context.Context, c *call, ids *pb.UserAppIDSet) (localapp.App, error) {
	userID, err := resolveUser(c, ids.GetUserId())
	if err != nil {
		return localapp.App{}, err
	}

	appID := ids.GetAppId()
	switch {
	case appID == "" && c.key.AppID == "":
		return localapp.App{}, fail(pb.StatusCode_CONN_INVALID_REQUEST,
			"the request names no app and the API key is not an app key: "+
				"use the path /v2/users/{user_id}/apps/{app_id}/... or set user_app_id")
	case appID == "":
		appID = c.key.AppID
	case c.key.AppID != "" && appID != c.key.AppID:
		return localapp.App{}, fail(pb.StatusCode_CONN_INSUFFICIENT_SCOPES,
			"the API key is a key of app %q and cannot act on app %q", c.key.AppID, appID)
	}
	c.appID = appID

	app, err := s.apps.GetApp(ctx, userID, appID)
	if errors.Is(err, localapp.ErrAppNotFound) {
		return localapp.App{}, fail(pb.StatusCode_CONN_DOES_NOT_EXIST, "app %q of user %q not found", appID, userID)
	}
	if err != nil {
		return localapp.App{}, fmt.Errorf("get app %q of user %q: %w", appID, userID, err)
	}
	return app, nil
}
