package cli

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
	"github.com/spike-dev/spike/shared/password/strength"
)

func (inv *invocation) operatorCommand() *cobra.Command {
	return groupCommand("operator", "Initialise, unseal, seal and inspect SPIKE",
		`  echo 'correct horse battery staple' | spike operator init
  spike operator init --shares 3/5
  spike operator unseal
  spike operator unseal --shares < my-share.txt
  spike operator rekey --shares 2/3
  spike operator status -o json`,
		inv.initCommand(),
		inv.unsealCommand(),
		inv.sealCommand(),
		inv.statusCommand(),
		inv.rekeyCommand(),
		inv.rotateCommand(),
		inv.rewrapCommand(),
		inv.backupCommand(),
		inv.restoreCommand(),
	)
}

const passwordHelp = `The admin password is read without echo when stdin is a terminal. Otherwise
exactly one line is read from stdin (the line ending is dropped), so scripts
can pipe it in; keep it out of shell history, e.g. with a password manager's
command line or a file readable only by you.`

func (inv *invocation) sealCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "seal",
		Short: "Make every Keeper forget the root key, until an unseal",
		Long: `seal makes every Keeper forget the root key at once, for example when a
breach is suspected. From then on every request fails with "SPIKE is
sealed", the Keepers do not hand the key to each other, and only an admin
with the password brings SPIKE back ('spike operator unseal', or 'spike
login', which unseals too). The audit trail records who sealed.

A Keeper that cannot be reached is reported and makes seal fail: it may
still hold the key. Run seal again once it is back.`,
		Example: `  spike operator seal`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.operator.Seal(ctx, connect.NewRequest(&nexusv1.SealRequest{}))
				if err != nil {
					return err
				}
				if err := writeSeal(inv.p.Stdout, inv.output, resp.Msg); err != nil {
					return err
				}
				if n := unconfirmed(resp.Msg.GetKeepers()); n > 0 {
					return fmt.Errorf("%w: %d may still hold the root key; run 'spike operator seal' again once they answer", errSealUnconfirmed, n)
				}
				return nil
			})
		},
	}
}

// unconfirmed counts the Keepers that did not confirm a seal, or still
// hold the keyring.
func unconfirmed(ks []*nexusv1.KeeperStatus) int {
	n := 0
	for _, k := range ks {
		if !k.GetSealConfirmed() || k.GetHoldsKeyring() {
			n++
		}
	}
	return n
}

func (inv *invocation) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether SPIKE is initialised, sealed, and what each Keeper holds",
		Long: `status shows whether SPIKE is initialised and sealed, the database schema
version, whether Nexus can reach a Keeper, the keyring ID and the Nexus
version, and for every Keeper: whether it is reachable (and why not), holds
the root key (which version, from an unseal or from a peer), or was sealed
on purpose.

It exits 0 when SPIKE can serve secrets, 2 when it is sealed or not
initialised (as Vault's status does), and 1 when Nexus cannot be reached.`,
		Example: `  spike operator status
  spike operator status -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return inv.withNexus(cmd.Context(), func(ctx context.Context, n *nexus) error {
				resp, err := n.operator.Status(ctx, connect.NewRequest(&nexusv1.StatusRequest{}))
				if err != nil {
					return err
				}
				if err := writeStatus(inv.p.Stdout, inv.output, resp.Msg); err != nil {
					return err
				}
				if resp.Msg.GetSealed() || !resp.Msg.GetInitialized() {
					return exitCodeError{code: exitRefused}
				}
				return nil
			})
		},
	}
}

// passwordUse says how a command reads the admin password and calls Nexus
// with it.
type passwordUse struct {
	// confirm asks for the password twice on a terminal.
	confirm bool
	// noToken sends no admin token: the password authenticates the call.
	noToken bool
	// isNew checks the password as a new one (strength.Check) before
	// anything is sent.
	isNew bool
}

// withPassword connects to Nexus, reads the admin password and runs fn with
// it under the call deadline. It connects first so that a missing SVID is
// reported before anyone types a password; the password is cleared after.
func (inv *invocation) withPassword(cmd *cobra.Command, use passwordUse, fn func(context.Context, *nexus, []byte) error) error {
	ctx := cmd.Context()
	open := inv.connect
	if use.noToken {
		open = inv.connectWithoutToken
	}
	n, err := open(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	var check func([]byte) error
	if use.isNew {
		cfg, err := inv.config()
		if err != nil {
			return err
		}
		check = func(pw []byte) error { return strength.Check(pw, cfg.TrustDomain.Name()) }
	}
	pw, err := readPassword(ctx, inv.p.Stdin, inv.p.Stderr, use.confirm, check)
	if err != nil {
		return passwordInputErr(cmd, err)
	}
	defer clear(pw)
	return inv.call(ctx, n, func(ctx context.Context) error { return fn(ctx, n, pw) })
}

// passwordInputErr explains a password that could not be read or was
// refused before anything was sent.
func passwordInputErr(cmd *cobra.Command, err error) error {
	var refused *newPasswordError
	switch {
	case errors.Is(err, errEmptyPassword):
		return usageErrorf(cmd, "%w: type it at the prompt, or pipe it in: echo '<password>' | %s", err, cmd.CommandPath())
	case errors.Is(err, errNoShares):
		return usageErrorf(cmd, "%w: type them at the prompts, or pipe them in, one a line", err)
	case errors.Is(err, errPasswordTooLong), errors.Is(err, errPasswordsDiffer), errors.As(err, &refused):
		return &usageError{command: cmd.CommandPath(), err: err}
	}
	return err
}

// saveInitToken saves the token that init returned and says where it went.
// SPIKE is initialised whatever happens here, so a failure is a warning on
// stderr, not an error: the admin can still log in with 'spike login'.
func (inv *invocation) saveInitToken(token *nexusv1.AdminToken) *loginDoc {
	return inv.saveToken(token, "SPIKE is initialised")
}

// saveToken saves a token that an operator command returned (done says
// what the command did, for the warning when it cannot be saved).
func (inv *invocation) saveToken(token *nexusv1.AdminToken, done string) *loginDoc {
	if token.GetToken() == "" {
		return nil
	}
	cfg, err := inv.config()
	if err == nil {
		err = saveToken(cfg.TokenFile, token.GetToken())
	}
	if err != nil {
		fmt.Fprintf(inv.p.Stderr, "spike: warning: %s, but you are not logged in: %v\nLog in with: spike login\n", done, err)
		return nil
	}
	return &loginDoc{ExpiresAt: formatTime(token.GetExpiresAt()), TokenFile: cfg.TokenFile}
}
