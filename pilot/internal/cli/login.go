package cli

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	nexusv1 "github.com/spike-dev/spike/proto/spike/nexus/v1"
)

//nolint:gosec // G101: help text that mentions the token file, not a credential
const tokenHelp = `The token is saved in SPIKE_TOKEN_FILE, by default ~/.spike/token, with mode
0600 (the directory is created with mode 0700). Every later spike command
sends it to Nexus; spike refuses a token file that other users may read.
spike never prints the token.`

func (inv *invocation) loginCommand() *cobra.Command {
	var (
		ttl        time.Duration
		withShares bool
	)
	cmd := &cobra.Command{
		Use:   "login [--ttl DURATION] [--shares]",
		Short: "Log in as admin with the admin password (or unseal key shares) and save the admin token",
		Long: `login checks the admin password (with --shares: a quorum of unseal key
shares, for a keyring that has them) with Nexus and saves the admin token it
returns. Admin commands (secrets, policies) need the token as well as Pilot's
admin SVID, so a stolen certificate alone is not enough. The token expires
after --ttl (Nexus's default, 8h unless configured otherwise, and never
longer than Nexus's maximum); log in again then, or end it early with
'spike logout'. Logging in also unseals a sealed SPIKE.

` + tokenHelp + `

` + passwordHelp,
		Example: `  spike login
  spike login --ttl 1h
  spike login --shares
  echo 'correct horse battery staple' | spike login -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("ttl") && ttl < time.Second {
				return usageErrorf(cmd, "--ttl must be at least 1s, got %s", ttl)
			}
			cfg, err := inv.config()
			if err != nil {
				return err
			}
			if cfg.TokenFile == "" {
				return errNoTokenFile
			}
			req := &nexusv1.LoginRequest{TtlSeconds: int64(ttl / time.Second)}
			login := func(ctx context.Context, n *nexus) error {
				resp, err := n.operator.Login(ctx, connect.NewRequest(req))
				req.Password, req.Shares = nil, nil
				if err != nil {
					return err
				}
				token := resp.Msg.GetToken()
				if err := saveToken(cfg.TokenFile, token.GetToken()); err != nil {
					return err
				}
				return writeLogin(inv.p.Stdout, inv.output, loginDoc{ExpiresAt: formatTime(token.GetExpiresAt()), TokenFile: cfg.TokenFile})
			}
			if withShares {
				return inv.withShares(cmd, true, func(ctx context.Context, n *nexus, shares [][]byte) error {
					req.Shares = shares
					return login(ctx, n)
				})
			}
			return inv.withPassword(cmd, passwordUse{noToken: true}, func(ctx context.Context, n *nexus, pw []byte) error {
				req.Password = pw
				return login(ctx, n)
			})
		},
	}
	cmd.Flags().BoolVar(&withShares, "shares", false, "log in with unseal key shares instead of the password (one a line on stdin)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the token stays valid, as a `DURATION` like 8h or 30m (default: Nexus's default)")
	return cmd
}

func (inv *invocation) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Revoke the admin token and remove the token file",
		Long: `logout asks Nexus to revoke the saved admin token, then removes the token
file. Without a token file there is nothing to do: logout says so and
succeeds. When Nexus no longer accepts the token (it expired or was revoked
already), logout removes the file all the same and succeeds with a note.
When Nexus cannot be reached or refuses for another reason, the file is
kept so that you can try again.`,
		Example: `  spike logout
  spike logout -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := inv.config()
			if err != nil {
				return err
			}
			doc := logoutDoc{TokenFile: cfg.TokenFile}
			token, err := readToken(cfg.TokenFile)
			if err != nil {
				return err
			}
			if token == "" {
				return writeLogout(inv.p.Stdout, inv.output, doc)
			}
			ctx := cmd.Context()
			n, err := inv.dial(ctx, cfg, token)
			if err != nil {
				return err
			}
			defer n.Close()
			err = inv.call(ctx, n, func(ctx context.Context) error {
				_, err := n.operator.Logout(ctx, connect.NewRequest(&nexusv1.LogoutRequest{}))
				return err
			})
			switch {
			case err == nil:
				doc.Revoked = true
			case connect.IsWireError(err) && connect.CodeOf(err) == connect.CodeUnauthenticated:
				doc.Note = errorMessage(err)
			default:
				return err
			}
			if err := removeToken(cfg.TokenFile); err != nil {
				return err
			}
			doc.Removed = true
			return writeLogout(inv.p.Stdout, inv.output, doc)
		},
	}
}
