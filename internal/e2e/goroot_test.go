package e2e

import (
	"os/exec"
	"strings"
	"time"
)

// runtimeGOROOT asks the go command, because runtime.GOROOT is deprecated
// and empty for binaries built with -trimpath.
func runtimeGOROOT() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func sleep100ms() { time.Sleep(100 * time.Millisecond) }
