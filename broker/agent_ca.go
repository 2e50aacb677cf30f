package broker

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"
)

// The local CA over the control socket: the agent read the CA from the keychain
// once, when its proxy was made; `gatepass ca export` and `ca path` ask it for the
// certificate instead of reading the keychain again (a prompt on macOS after an
// upgrade) or, worse, issuing a new CA while the agent keeps intercepting with the
// old one (LESSONS: one keychain read at agent start; CLI asks the agent).

// AgentCA is the local CA certificate an agent's proxy intercepts with: the public
// certificate in PEM and the file the agent wrote it to for curl --cacert. The
// private key never leaves the agent.
type AgentCA struct {
	CertPEM []byte
	Path    string
}

// SetCA tells the control API which local CA this agent's proxy uses, each time a
// proxy is made (the desktop app makes a new one when the proxy is switched on).
func (b *Broker) SetCA(ca AgentCA) {
	ca.CertPEM = slices.Clone(ca.CertPEM)
	b.ca.Store(&ca)
}

// ownCA is what SetCA last said; ok is false before the proxy was first made.
func (b *Broker) ownCA() (AgentCA, bool) {
	if ca := b.ca.Load(); ca != nil {
		return *ca, true
	}
	return AgentCA{}, false
}

// controlCA is the wire form of a CA answer: the certificate only.
type controlCA struct {
	CertPEM string `json:"cert_pem"`
	Path    string `json:"path,omitempty"`
}

func (b *Broker) serveCA(w http.ResponseWriter, _ *http.Request) {
	ca, ok := b.ownCA()
	if !ok {
		// Reading the keychain here would be the very read this request avoids,
		// and a CA made here could differ from the one the proxy makes next.
		writeControl(w, http.StatusConflict, controlError{Error: fmt.Sprintf(
			"the running gatepass agent (pid %d) has not loaded the local CA yet: its proxy is off or still starting; "+
				"switch the proxy on in the gatepass window (or wait for `gatepass proxy` to listen), then try again", os.Getpid())})
		return
	}
	writeControl(w, http.StatusOK, controlCA{CertPEM: string(ca.CertPEM), Path: ca.Path})
}

// CA asks the agent for the local CA certificate its proxy uses (SetCA).
// ErrNoAgent when none runs; errors.ErrUnsupported when the agent is from a
// gatepass that cannot answer.
func (c AgentClient) CA(ctx context.Context) (AgentCA, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var ca controlCA
	if err := c.do(ctx, http.MethodGet, "/v1/ca", nil, &ca); err != nil {
		return AgentCA{}, err
	}
	return AgentCA{CertPEM: []byte(ca.CertPEM), Path: ca.Path}, nil
}
