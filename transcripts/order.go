package transcripts

import (
	"fmt"
	"slices"
	"time"

	"github.com/keyceremony/keyceremony/transcripts/events"
)

// keyState is what the events so far say about one key.
type keyState struct {
	generated, escrowed, wrapped, imported bool
	kcv                                    string
	kcvLine                                int
	paramsValidTo                          time.Time
	paramsLine                             int
}

// checkOrder checks that the events that count follow the script's order
// and agree about each key: generate-key, then escrow (when the script has
// an escrow step), then wrap with unexpired parameters, then import, then
// check-import, with one key check value throughout. Parameters, wraps and
// imports are per KMS key: a multi-Region key's material goes into its
// primary and each replica.
func checkOrder(res *Result) error {
	escrowStep := slices.ContainsFunc(res.Header.Script, func(s ScriptStep) bool { return s.ID == "escrow" })
	keys := map[string]*keyState{}
	key := func(label string) *keyState {
		if keys[label] == nil {
			keys[label] = &keyState{}
		}
		return keys[label]
	}
	// target is the state of label's material in the KMS key arn.
	target := func(label, arn string) *keyState { return key(label + "\x00" + arn) }
	lastNo, lastNoLine := 0, 0
	for _, e := range res.Events {
		line := e.Seq + 1
		fail := func(field, reason, expected, found string) error {
			return &VerifyError{Class: ClassOrder, Line: line, Field: field, Reason: reason, Expected: expected, Found: found}
		}
		// sameKCV checks that a key check value is the key's first one.
		sameKCV := func(label, kcv string) error {
			k := key(label)
			switch {
			case kcv == "":
			case k.kcv == "":
				k.kcv, k.kcvLine = kcv, line
			case kcv != k.kcv:
				return fail("data.key_check_value", fmt.Sprintf("key check value of %q differs from line %d", label, k.kcvLine), k.kcv, kcv)
			}
			return nil
		}
		if e.Step == "resume" {
			// A resumed ceremony runs its steps again from the first.
			lastNo = 0
		}
		if e.StepNo != 0 {
			if e.StepNo < lastNo {
				return fail("step_no", fmt.Sprintf("event of script step %d after an event of step %d (line %d)", e.StepNo, lastNo, lastNoLine), fmt.Sprintf("%d or more", lastNo), fmt.Sprint(e.StepNo))
			}
			lastNo, lastNoLine = e.StepNo, line
		}
		switch d := e.Data.(type) {
		case *events.GenerateKey:
			if k := key(d.Label); k.wrapped || k.imported {
				return fail("step", fmt.Sprintf("key %q generated after it was wrapped or imported", d.Label), "generate-key first", e.Step)
			}
			key(d.Label).generated = true
			if err := sameKCV(d.Label, d.KeyCheckValue); err != nil {
				return err
			}
		case *events.Key: // an air-gap wrap names the existing key it wraps
			if err := sameKCV(d.Label, d.KeyCheckValue); err != nil {
				return err
			}
		case *events.FetchParams:
			target(d.Label, d.KMSKeyARN).paramsValidTo, target(d.Label, d.KMSKeyARN).paramsLine = d.ParametersValidTo, line
		case *events.Params:
			key("").paramsValidTo, key("").paramsLine = d.ParametersValidTo, line
		case *events.Escrow:
			if len(d.Keys) == 0 {
				return fail("data.keys", "escrow event names no key", "the escrowed keys", "none")
			}
			for _, ek := range d.Keys {
				k := key(ek.Label)
				if ek.KeyCheckValue != "" && k.kcv != "" && ek.KeyCheckValue != k.kcv {
					return fail("data.keys.key_check_value", fmt.Sprintf("escrowed key %q has another key check value than line %d", ek.Label, k.kcvLine), k.kcv, ek.KeyCheckValue)
				}
				k.escrowed = true
			}
			if d.QuorumCheck != "ok" {
				return fail("data.quorum_check", "escrow quorum check did not pass", "ok", d.QuorumCheck)
			}
		case *events.Wrap:
			k := target(d.Label, d.KMSKeyARN)
			if k.imported {
				return fail("step", fmt.Sprintf("key %q wrapped after it was imported", d.Label), "wrap before import", e.Step)
			}
			vt, vtLine := k.paramsValidTo, k.paramsLine
			if p := key(""); vt.IsZero() && !p.paramsValidTo.IsZero() {
				vt, vtLine = p.paramsValidTo, p.paramsLine // the air-gap wrap's params event names no label
			}
			if !vt.IsZero() && !e.Time.Before(vt) {
				return fail("time", fmt.Sprintf("import parameters of %q (line %d) had expired when the key was wrapped", d.Label, vtLine), "before "+vt.Format(time.RFC3339), e.Time.Format(time.RFC3339))
			}
			k.wrapped = true
			key(d.Label).wrapped = true
			if err := sameKCV(d.Label, d.KeyCheckValue); err != nil {
				return err
			}
		case *events.Import:
			k, t := key(d.Label), target(d.Label, d.KMSKeyARN)
			if escrowStep && !k.escrowed {
				return fail("step", fmt.Sprintf("key %q uploaded before its escrow was proven", d.Label), "escrow event first", e.Step)
			}
			if k.generated && !t.wrapped {
				return fail("step", fmt.Sprintf("key %q imported before it was wrapped", d.Label), "wrap first", e.Step)
			}
			k.imported, t.imported = true, true
			if err := sameKCV(d.Label, d.KeyCheckValue); err != nil {
				return err
			}
		case *events.Rotate:
			if !target(d.Label, d.KMSKeyARN).imported {
				return fail("step", fmt.Sprintf("key %q rotated to material not imported", d.Label), "import first", e.Step)
			}
		case *events.CheckImport:
			if !target(d.Label, d.KMSKeyARN).imported {
				return fail("step", fmt.Sprintf("key %q checked in KMS before it was imported", d.Label), "import first", e.Step)
			}
		}
	}
	return nil
}
