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

const sharesHelp = `Shares are read one a line: on a terminal each is asked for without echo
until as many as the split needs are given (an empty line stops early);
otherwise lines are read from stdin until that many, or the end of input.`

func (inv *invocation) initCommand() *cobra.Command {
	var (
		shares     shareSpec
		noPassword bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the root keyring, sealed under a new admin password and/or unseal key shares",
		Long: `init creates SPIKE's root keyring, stores it sealed under the admin password
and unseals Keeper, then prints the keyring ID and what to do next. It fails
if SPIKE is already initialised.

With --shares K/N it also (or, with --no-password, only) seals the keyring
under a random unseal key split into N shares, any K of which unseal SPIKE.
The shares are printed once, each labelled "i-of-N": give each to a
different person and store them apart. Nexus keeps none of them. With
shares there is nothing an attacker with the database can guess offline.

init also logs you in: it saves the admin token that Nexus returns, as
'spike login' does (see 'spike login --help' for where it goes). If the
token cannot be saved, init still succeeds and says so; run 'spike login'.

On a terminal the password is asked twice. ` + passwordHelp + `

The new password must be 12 to 1024 bytes of UTF-8 text and hard to guess:
zxcvbn (a password strength estimator) must put it at 10^8 guesses or more,
counting SPIKE's names and the trust domain as easy words. Four or more
unrelated words do; a word with digits and symbols usually does not.`,
		Example: `  spike operator init
  echo 'correct horse battery staple' | spike operator init
  spike operator init < ~/.spike-password
  spike operator init --shares 3/5
  spike operator init --shares 2/3 --no-password`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if noPassword && shares.zero() {
				return usageErrorf(cmd, "--no-password needs --shares K/N: something must unseal SPIKE")
			}
			run := func(ctx context.Context, n *nexus, pw []byte) error {
				resp, err := n.operator.Init(ctx, connect.NewRequest(&nexusv1.InitRequest{
					Password: pw, ShareThreshold: shares.k, ShareCount: shares.n,
				}))
				if err != nil {
					return err
				}
				defer clearAll(resp.Msg.GetShares())
				login := inv.saveInitToken(resp.Msg.GetToken())
				if err := writeInit(inv.p.Stdout, inv.output, resp.Msg, login, len(pw) > 0); err != nil {
					return err
				}
				if p := resp.Msg.GetProblem(); p != "" {
					return errors.New(p)
				}
				return nil
			}
			if noPassword {
				return inv.withoutPassword(cmd, run)
			}
			return inv.withPassword(cmd, passwordUse{confirm: true, noToken: true, isNew: true}, run)
		},
	}
	cmd.Flags().Var(&shares, "shares", "also seal under a random unseal key split into N shares, any K of which unseal (e.g. 3/5)")
	cmd.Flags().BoolVar(&noPassword, "no-password", false, "set no admin password: only the shares unseal (needs --shares)")
	return cmd
}

// withoutPassword connects to Nexus without a token and runs fn with no
// password under the call deadline.
func (inv *invocation) withoutPassword(cmd *cobra.Command, fn func(context.Context, *nexus, []byte) error) error {
	ctx := cmd.Context()
	n, err := inv.connectWithoutToken(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	return inv.call(ctx, n, func(ctx context.Context) error { return fn(ctx, n, nil) })
}

func (inv *invocation) unsealCommand() *cobra.Command {
	var withShares bool
	cmd := &cobra.Command{
		Use:   "unseal",
		Short: "Unseal SPIKE with the admin password or unseal key shares",
		Long: `unseal loads the sealed root keyring into Keeper with the admin password,
or with --shares a quorum of unseal key shares, after all Keepers lost it
(for example after a restart). Unsealing an unsealed SPIKE with the right
credentials changes nothing.

` + passwordHelp + `

` + sharesHelp,
		Example: `  spike operator unseal
  echo 'correct horse battery staple' | spike operator unseal
  spike operator unseal --shares
  cat share-1.txt share-4.txt | spike operator unseal --shares`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			unseal := func(ctx context.Context, n *nexus, req *nexusv1.UnsealRequest) error {
				resp, err := n.operator.Unseal(ctx, connect.NewRequest(req))
				if err != nil {
					return err
				}
				return writeUnseal(inv.p.Stdout, inv.output, resp.Msg)
			}
			if withShares {
				return inv.withShares(cmd, false, func(ctx context.Context, n *nexus, shares [][]byte) error {
					return unseal(ctx, n, &nexusv1.UnsealRequest{Shares: shares})
				})
			}
			return inv.withPassword(cmd, passwordUse{}, func(ctx context.Context, n *nexus, pw []byte) error {
				return unseal(ctx, n, &nexusv1.UnsealRequest{Password: pw})
			})
		},
	}
	cmd.Flags().BoolVar(&withShares, "shares", false, "unseal with unseal key shares instead of the password")
	return cmd
}

// withShares connects to Nexus (without the admin token when noToken is
// set), reads shares and runs fn with them under the call deadline; the
// shares are cleared after.
func (inv *invocation) withShares(cmd *cobra.Command, noToken bool, fn func(context.Context, *nexus, [][]byte) error) error {
	ctx := cmd.Context()
	open := inv.connect
	if noToken {
		open = inv.connectWithoutToken
	}
	n, err := open(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	shares, err := readShares(ctx, "Share", inv.p.Stdin, inv.p.Stderr)
	if err != nil {
		return passwordInputErr(cmd, err)
	}
	defer clearAll(shares)
	return inv.call(ctx, n, func(ctx context.Context) error { return fn(ctx, n, shares) })
}

func (inv *invocation) rekeyCommand() *cobra.Command {
	var (
		shares                 shareSpec
		noPassword, withShares bool
	)
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Replace the admin password and/or the unseal key shares",
		Long: `rekey seals the root keyring again under new credentials: a new admin
password, and with --shares K/N a new split of a new unseal key (printed
once, as by init). It needs an admin login and the current credentials: the
current password, or with --with-shares a quorum of the current shares.

Afterwards the old password and ALL old shares are refused by unseal and
login, also the credentials you did not replace: the keyring ends up with
exactly the new ones (--no-password: shares only). The root keys do not
change, so nothing is re-encrypted and Keepers keep serving.

A copy of the sealed keyring taken before the rekey (a database backup)
still opens with the credentials of its time. A rekey revokes every admin
token; yours is replaced and saved as 'spike login' saves it. After a
leaked password or share, rekey, then rotate (spike operator rotate: the
root keys an old backup opens are destroyed), and destroy old backups.

Input order: the current password (or shares), then the new password,
twice on a terminal. From a pipe: one line each, e.g.
  printf '%s\n%s\n' "$OLD" "$NEW" | spike operator rekey

` + sharesHelp,
		Example: `  spike operator rekey
  spike operator rekey --shares 3/5
  spike operator rekey --with-shares --shares 2/3 --no-password`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if noPassword && shares.zero() {
				return usageErrorf(cmd, "--no-password needs --shares K/N: something must unseal SPIKE")
			}
			ctx := cmd.Context()
			n, err := inv.connect(ctx)
			if err != nil {
				return err
			}
			defer n.Close()
			req := &nexusv1.RekeyRequest{NewShareThreshold: shares.k, NewShareCount: shares.n}
			defer func() {
				clear(req.Password)
				clear(req.NewPassword)
				clearAll(req.Shares)
			}()
			if withShares {
				req.Shares, err = readShares(ctx, "Current share", inv.p.Stdin, inv.p.Stderr)
			} else {
				req.Password, err = readPasswordAs(ctx, "Current admin password", inv.p.Stdin, inv.p.Stderr, false, nil)
			}
			if err != nil {
				return passwordInputErr(cmd, err)
			}
			if !noPassword {
				cfg, err := inv.config()
				if err != nil {
					return err
				}
				check := func(pw []byte) error { return strength.Check(pw, cfg.TrustDomain.Name()) }
				if req.NewPassword, err = readPasswordAs(ctx, "New admin password", inv.p.Stdin, inv.p.Stderr, true, check); err != nil {
					return passwordInputErr(cmd, err)
				}
			}
			return inv.call(ctx, n, func(ctx context.Context) error {
				resp, err := n.operator.Rekey(ctx, connect.NewRequest(req))
				if err != nil {
					return err
				}
				defer clearAll(resp.Msg.GetShares())
				// Every admin token was revoked; keep the new one, as
				// init does (a failure to save it is a warning).
				if resp.Msg.GetProblem() == "" && inv.saveToken(resp.Msg.GetToken(), "SPIKE is rekeyed") == nil {
					fmt.Fprintln(inv.p.Stderr, "spike: every admin token was revoked by the rekey; log in again with: spike login")
				}
				if err := writeRekey(inv.p.Stdout, inv.output, resp.Msg, len(req.NewPassword) > 0); err != nil {
					return err
				}
				if p := resp.Msg.GetProblem(); p != "" {
					// The shares are printed; whether they or the old
					// credentials open SPIKE is unknown (exit 3).
					return connect.NewError(connect.CodeUnknown, errors.New(p))
				}
				return nil
			})
		},
	}
	cmd.Flags().Var(&shares, "shares", "also seal under a new unseal key split into N shares, any K of which unseal (e.g. 3/5)")
	cmd.Flags().BoolVar(&noPassword, "no-password", false, "set no new password: only the new shares unseal (needs --shares)")
	cmd.Flags().BoolVar(&withShares, "with-shares", false, "prove the current credentials with shares instead of the password")
	return cmd
}
