package worker

import (
	"github.com/spindle-server/spindle/ipc"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Automatic certificates: the master obtains them and opens the CA's challenges; a
// worker serves both as they arrive, without a reload (httpcore/acme.go).

// initACME gives a new worker what the master delivered before it started.
func (w *worker) initACME(cfg *httpcore.Config, cm ipc.Config) {
	for _, c := range cm.ACMECertificates {
		w.acme(cfg, c)
	}
	for _, c := range cm.ACMEChallenges {
		w.acme(cfg, c)
	}
}

// acme applies an ACME message; an added challenge is acknowledged once served, for
// the master to ask the CA to validate.
func (w *worker) acme(cfg *httpcore.Config, m ipc.Message) {
	switch m := m.(type) {
	case ipc.ACMECertificate:
		if err := cfg.SetACMECertificate(m.Names, m.Chain, m.Key); err != nil {
			w.log.Alertf("%v", err)
		}
	case ipc.ACMEChallenge:
		if err := cfg.SetACMEChallenge(m.Kind, m.Domain, m.Token, m.KeyAuth, m.Chain, m.Key, m.Remove); err != nil {
			w.log.Alertf("%v", err)
			return
		}
		if !m.Remove && m.ID != 0 {
			w.ctl.Send(ipc.ACMEChallengeAck{ID: m.ID})
		}
	}
}
