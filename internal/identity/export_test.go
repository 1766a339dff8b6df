package identity

// SetJoinedHook makes i call fn each time a lookup has joined or started
// the request for its key, so tests know that the lookup is waiting on it.
func (i *Introspector) SetJoinedHook(fn func()) { i.joined = fn }
