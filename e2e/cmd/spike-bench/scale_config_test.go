package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spike-dev/spike/shared/svid"
)

func TestParseConfigScale(t *testing.T) {
	t.Parallel()
	vars := env(map[string]string{"SPIKE_DATABASE_URL": "postgres://x"})
	got, err := parseConfig([]string{"-mode", "scale", "-admin-token-file", "tok",
		"-admin-svid-cert", "c.pem", "-admin-svid-key", "k.pem", "-admin-trust-bundle", "b.pem"}, vars, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := &scaleConfig{
		Sizes:          []int{10_000, 100_000, 1_000_000},
		Policies:       []int{1000, 10_000},
		Writers:        64,
		AdminTokenFile: "tok",
		AdminSVID:      svid.Config{CertFile: "c.pem", KeyFile: "k.pem", BundleFile: "b.pem"},
	}
	if diff := cmp.Diff(want, got.Scale); diff != "" {
		t.Errorf("scale config (-want +got):\n%s", diff)
	}
	// One concurrency and HTTP/2 unless given.
	if !cmp.Equal(got.Concurrency, []int{16}) || !cmp.Equal(got.Protocols, []string{"h2"}) {
		t.Errorf("concurrency %v, protocols %v; want [16], [h2]", got.Concurrency, got.Protocols)
	}

	got, err = parseConfig([]string{"-mode", "scale", "-sizes", "2_000, 5000,1e6", "-policies", "",
		"-writers", "8", "-concurrency", "4"}, vars, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got.Scale.Sizes, []int{2000, 5000, 1_000_000}) || got.Scale.Policies != nil ||
		got.Scale.Writers != 8 || !cmp.Equal(got.Concurrency, []int{4}) {
		t.Errorf("config = %+v, scale %+v", got, got.Scale)
	}

	// Without -mode scale the scale settings stay unset.
	got, err = parseConfig(nil, vars, io.Discard)
	if err != nil || got.Scale != nil {
		t.Errorf("default mode: scale %+v, error %v; want none", got.Scale, err)
	}
}

func TestParseConfigScaleErrors(t *testing.T) {
	t.Parallel()
	admin := []string{"-admin-token-file", "tok", "-admin-svid-cert", "c", "-admin-svid-key", "k", "-admin-trust-bundle", "b"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "fast"}, "-mode"},
		{[]string{"-mode", "scale", "-sizes", "5000,2000"}, "increasing"},
		{[]string{"-mode", "scale", "-sizes", "5000,5000"}, "increasing"},
		{[]string{"-mode", "scale", "-sizes", "99"}, "-sizes"},
		{[]string{"-mode", "scale", "-sizes", "20000000"}, "-sizes"},
		{[]string{"-mode", "scale", "-sizes", "1500.5"}, "whole number"},
		{[]string{"-mode", "scale", "-sizes", "x"}, "whole number"},
		{[]string{"-mode", "scale", "-sizes", ""}, "at least one"},
		{[]string{"-mode", "scale", "-policies", "1"}, "-policies"},
		{[]string{"-mode", "scale", "-policies", "100"}, "-admin-token-file"},
		{[]string{"-mode", "scale", "-writers", "0"}, "-writers"},
		{append([]string{"-mode", "scale", "-concurrency", "1,16"}, admin...), "one concurrency"},
		{append([]string{"-mode", "scale", "-protocols", "h1"}, admin...), "h2 only"},
		{append([]string{"-mode", "scale", "-floor", "https://f"}, admin...), "not in the scale mode"},
	} {
		_, err := parseConfig(tc.args, env(map[string]string{"SPIKE_DATABASE_URL": "postgres://x"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%q) = %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}

func TestScaleLayout(t *testing.T) {
	t.Parallel()
	if got, want := scalePath(12345), "bench/scale/d00123/s0012345"; got != want {
		t.Errorf("scalePath = %q, want %q", got, want)
	}
	if got, want := scaleDir(123), "bench/scale/d00123"; got != want {
		t.Errorf("scaleDir = %q, want %q", got, want)
	}
	if !strings.HasPrefix(scalePath(12345), scaleDir(123)+"/") {
		t.Error("secret 12345 is not in directory 123")
	}
	// putsFor counts the calls writing [from, to) one by one does.
	for _, tc := range [][2]int{{0, 2000}, {2000, 5000}, {1, 100}, {1, 101}, {99, 201}, {5, 5}} {
		want := 0
		for i := tc[0]; i < tc[1]; i++ {
			want += versionsOf(i)
		}
		if got := putsFor(tc[0], tc[1]); got != want {
			t.Errorf("putsFor(%d, %d) = %d, want %d", tc[0], tc[1], got, want)
		}
	}
	if putsFor(0, 2000) != 2180 {
		t.Errorf("putsFor(0, 2000) = %d: 1%% of secrets should have 10 versions", putsFor(0, 2000))
	}
}
