package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/keyceremony/keyceremony/internal/evidence"
	"github.com/keyceremony/keyceremony/internal/sshsig"
	"github.com/keyceremony/keyceremony/transcripts"
)

const witnessHelp = `Usage: keyceremony witness sign --key SSH_KEY --name NAME [--pubkey PEM] TRANSCRIPT

Verifies a sealed transcript, shows its seal words to compare with the ones
written down at the ceremony, and co-signs its seal payload with an SSH key
(namespace "keyceremony"), writing witness-NAME.sig beside the transcript.
The same file comes from OpenSSH:

  ssh-keygen -Y sign -n keyceremony -f SSH_KEY seal.payload
  mv seal.payload.sig witness-NAME.sig

and is checked with keyceremony verify --allowed-signers, or
ssh-keygen -Y verify -f allowed_signers -I NAME -n keyceremony -s witness-NAME.sig < seal.payload

`

func cmdWitness(args []string, stdin *os.File, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "sign" {
		return usageError("witness takes a subcommand: keyceremony witness sign --key SSH_KEY --name NAME TRANSCRIPT")
	}
	fs := newFlags("witness sign", stderr, witnessHelp)
	keyPath := fs.String("key", "", "the witness's SSH private key `FILE` (e.g. ~/.ssh/id_ed25519)")
	name := fs.String("name", "", "the witness's `NAME`, as in the allowed signers file")
	pubPath := fs.String("pubkey", "", "signing public key `PEM` the seal must match")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("witness sign takes exactly one transcript file")
	}
	if *keyPath == "" || *name == "" {
		return usageError("witness sign needs --key SSH_KEY and --name NAME")
	}
	if !witnessName.MatchString(*name) {
		return usageError(fmt.Sprintf("--name %q: use letters, digits and . _ @ + - (it becomes a file name)", *name))
	}
	var opts transcripts.Options
	if *pubPath != "" {
		if opts.PublicKey, err = readSealPublicKey(*pubPath); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("failed to read transcript: %w", err)
	}
	res, err := transcripts.VerifyBytes(data, opts)
	if err != nil {
		var ve *transcripts.VerifyError
		if errors.As(err, &ve) {
			return verifyFailure{fmt.Errorf("%s: refusing to witness: %w", pos[0], err)}
		}
		return err
	}
	signer, err := loadSSHSigner(*keyPath, stdin, stderr)
	if err != nil {
		return err
	}
	sig, err := sshsig.Sign(signer, transcripts.WitnessNamespace, res.Payload)
	if err != nil {
		return err
	}
	out := filepath.Join(filepath.Dir(pos[0]), witnessSigPrefix+*name+witnessSigSuffix)
	if err := evidence.Create(out, sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seal words: %s\n", res.Seal.Words)
	fmt.Fprintf(stdout, "signed by %s (%s): %s\n", *name, sshsig.Fingerprint(signer.PublicKey()), out)
	if !res.Pinned {
		fmt.Fprintln(stdout, "warning: the signer was not pinned: compare the seal words with the ones written down at the ceremony, or pass --pubkey")
	}
	return nil
}

// loadSSHSigner reads an OpenSSH private key, asking for its passphrase on
// the terminal when it has one. The key file's bytes are zeroed after use.
func loadSSHSigner(path string, stdin *os.File, stderr io.Writer) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the SSH key: %w", err)
	}
	defer clear(b)
	s, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if stdin == nil || !term.IsTerminal(int(stdin.Fd())) {
			return nil, &hintError{fmt.Errorf("SSH key %s has a passphrase and stdin is not a terminal", path),
				"run in a terminal, or sign with ssh-keygen -Y sign -n keyceremony -f KEY seal.payload and rename the .sig to witness-NAME.sig"}
		}
		fmt.Fprintf(stderr, "Passphrase for %s: ", path)
		pass, perr := term.ReadPassword(int(stdin.Fd()))
		fmt.Fprintln(stderr)
		if perr != nil {
			return nil, fmt.Errorf("failed to read the passphrase: %w", perr)
		}
		defer clear(pass)
		s, err = ssh.ParsePrivateKeyWithPassphrase(b, pass)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the SSH key %s: %w", path, err)
	}
	return s, nil
}
