package httpcore

import (
	"encoding/base64"
	"strings"
)

// BasicAuth returns the user and password of the request's "Authorization: Basic"
// header. ok is false when there is none or it does not decode to "user:password" with
// a non-empty user, the cases where nginx leaves $remote_user unset.
func (r *Request) BasicAuth() (user, password string, ok bool) {
	h := r.Header("Authorization")
	scheme, cred, found := strings.Cut(strings.TrimLeft(h, " "), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.Trim(cred, " "))
	if err != nil {
		return "", "", false
	}
	user, password, found = strings.Cut(string(dec), ":")
	if !found || user == "" {
		return "", "", false
	}
	return user, password, true
}

func init() {
	// $remote_user, nginx's user name from Basic authentication (for access logs and
	// auth modules); empty when the request carries none.
	RegisterVar("remote_user", func(r *Request) string {
		user, _, _ := r.BasicAuth()
		return user
	})
}
