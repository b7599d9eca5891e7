package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tricky is a value that breaks naive quoting, trimming or splitting:
// newlines (also trailing), '=', both quotes, a backslash, a tab, '$' and
// non-ASCII text.
const tricky = "line 1\nkey=value == 'single' \"double\" back\\slash\ttab $HOME `id` é 日本 🔑\n\n"

func TestReadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	trickyFile := writeFile("tricky.txt", tricky)
	pem := writeFile("cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	empty := writeFile("empty", "")
	binary := writeFile("binary", "\xff\xfe\x00s3cr3t")
	missing := filepath.Join(dir, "missing.txt")
	object := writeFile("data.json", `{"user":"admin","pass":"s3cr3t"}`)

	tests := []struct {
		name      string
		args      []string
		stdin     string
		want      map[string]string
		wantErr   string
		wantUsage bool // the error is an input mistake (usage error)
	}{
		{name: "k=v", args: []string{"user=admin", "pass=s3cr3t"}, want: map[string]string{"user": "admin", "pass": "s3cr3t"}},
		{name: "@FILE, a JSON object", args: []string{"@" + object}, want: map[string]string{"user": "admin", "pass": "s3cr3t"}},
		{name: "@FILE missing", args: []string{"@" + missing}, wantErr: "read " + missing + ": open " + missing + ": no such file or directory", wantUsage: true},
		{name: "@FILE not JSON", args: []string{"@" + trickyFile}, wantErr: trickyFile + " is not valid JSON: syntax error at byte 1", wantUsage: true},
		{
			name: "split at the first equals sign",
			args: []string{"dsn=postgres://db?sslmode=require&x=y", "b64=YWJj==", "eq=="},
			want: map[string]string{"dsn": "postgres://db?sslmode=require&x=y", "b64": "YWJj==", "eq": "="},
		},
		{name: "empty value", args: []string{"empty="}, want: map[string]string{"empty": ""}},
		{name: "spaces kept", args: []string{"greeting= hello world "}, want: map[string]string{"greeting": " hello world "}},
		{name: "k=@file byte-exact", args: []string{"v=@" + trickyFile}, want: map[string]string{"v": tricky}},
		{name: "k=@file keeps the final newline", args: []string{"cert=@" + pem}, want: map[string]string{"cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}},
		{name: "k=@empty file", args: []string{"v=@" + empty}, want: map[string]string{"v": ""}},
		{name: "k=- byte-exact", args: []string{"user=admin", "pass=-"}, stdin: tricky, want: map[string]string{"user": "admin", "pass": tricky}},
		{name: "k=- empty stdin", args: []string{"pass=-"}, want: map[string]string{"pass": ""}},
		{name: "all forms together", args: []string{"a=x", "b=@" + pem, "c=-"}, stdin: "from stdin", want: map[string]string{
			"a": "x", "b": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "c": "from stdin",
		}},
		{
			name:  "JSON object on stdin",
			args:  []string{"-"},
			stdin: `{"user": "admin", "pass": "s3cr3t", "multi": "a\nb \"q\" \u00e9 日本 🔑", "empty": ""}` + "\n",
			want:  map[string]string{"user": "admin", "pass": "s3cr3t", "multi": "a\nb \"q\" é 日本 🔑", "empty": ""},
		},
		{name: "JSON object with tricky value", args: []string{"-"}, stdin: `{"v":` + jsonString(tricky) + `}`, want: map[string]string{"v": tricky}},

		{name: "missing file", args: []string{"v=@" + missing}, wantErr: `read the value of key "v": open ` + missing + `: no such file or directory`},
		{name: "@ without a file name", args: []string{"v=@"}, wantErr: `key "v": "@" must be followed by a file name`, wantUsage: true},
		{
			name:      "two stdin keys",
			args:      []string{"a=-", "b=x", "c=-"},
			wantErr:   `keys "a" and "c" both read their value from stdin ("-"); only one value can come from stdin`,
			wantUsage: true,
		},
		{name: "dash mixed with pairs", args: []string{"a=x", "-"}, wantErr: `"-" (a JSON object on stdin) must be the only argument after PATH`, wantUsage: true},
		{name: "duplicate key", args: []string{"user=a", "user=s3cr3t"}, wantErr: `key "user" is given twice`, wantUsage: true},
		{name: "duplicate key across forms", args: []string{"user=-", "user=@" + pem}, wantErr: `key "user" is given twice`, wantUsage: true},
		{name: "empty key", args: []string{"user=admin", "=s3cr3t"}, wantErr: "pair 2 has an empty key", wantUsage: true},
		{name: "no equals sign", args: []string{"s3cr3t"}, wantErr: "pair 1 is not KEY=VALUE, KEY=@FILE or KEY=-", wantUsage: true},
		{
			name:      "invalid UTF-8 literal",
			args:      []string{"v=\xffs3cr3t"},
			wantErr:   `the value of key "v" is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)`,
			wantUsage: true,
		},
		{name: "invalid UTF-8 key", args: []string{"\xff=x"}, wantErr: `key "\xff" of pair 1 is not valid UTF-8 text`, wantUsage: true},
		{
			name:      "invalid UTF-8 file",
			args:      []string{"v=@" + binary},
			wantErr:   `the value of key "v" (from file ` + binary + `) is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)`,
			wantUsage: true,
		},
		{
			name:      "invalid UTF-8 stdin value",
			args:      []string{"v=-"},
			stdin:     "s3cr3t\xff",
			wantErr:   `the value of key "v" (from stdin) is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)`,
			wantUsage: true,
		},
		{
			name:      "invalid UTF-8 JSON",
			args:      []string{"-"},
			stdin:     "{\"v\": \"s3cr3t\xff\"}",
			wantErr:   "stdin is not valid UTF-8 text; SPIKE stores text, so encode binary data first (e.g. with base64)",
			wantUsage: true,
		},
		{name: "bad JSON", args: []string{"-"}, stdin: `{"user": s3cr3t}`, wantErr: "stdin is not valid JSON: syntax error at byte 10", wantUsage: true},
		{name: "truncated JSON", args: []string{"-"}, stdin: `{"user": "s3cr3t"`, wantErr: "stdin is not valid JSON: it ends in the middle of the object", wantUsage: true},
		{
			name:      "empty stdin for JSON",
			args:      []string{"-"},
			stdin:     " \n",
			wantErr:   `stdin is empty; it must hold one JSON object of string values, such as {"user":"admin","token":"abc"}`,
			wantUsage: true,
		},
		{
			name:      "JSON list",
			args:      []string{"-"},
			stdin:     `["s3cr3t"]`,
			wantErr:   `stdin must hold one JSON object of string values, such as {"user":"admin","token":"abc"}; it holds a list`,
			wantUsage: true,
		},
		{
			name:      "JSON number value",
			args:      []string{"-"},
			stdin:     `{"user": "admin", "port": 5432}`,
			wantErr:   `the value of key "port" in the JSON object on stdin is a number, not a string; put it in quotes`,
			wantUsage: true,
		},
		{
			name:      "JSON boolean value",
			args:      []string{"-"},
			stdin:     `{"tls": true}`,
			wantErr:   `the value of key "tls" in the JSON object on stdin is a boolean, not a string; put it in quotes`,
			wantUsage: true,
		},
		{
			name:      "JSON null value",
			args:      []string{"-"},
			stdin:     `{"pass": null}`,
			wantErr:   `the value of key "pass" in the JSON object on stdin is null, not a string; put it in quotes`,
			wantUsage: true,
		},
		{
			name:      "JSON object value",
			args:      []string{"-"},
			stdin:     `{"db": {"pass": "s3cr3t"}}`,
			wantErr:   `the value of key "db" in the JSON object on stdin is an object, not a string; put it in quotes`,
			wantUsage: true,
		},
		{
			name:      "JSON duplicate key",
			args:      []string{"-"},
			stdin:     `{"pass": "a", "pass": "s3cr3t"}`,
			wantErr:   `key "pass" is given twice in the JSON object on stdin`,
			wantUsage: true,
		},
		{name: "JSON empty key", args: []string{"-"}, stdin: `{"": "s3cr3t"}`, wantErr: "the JSON object on stdin has an empty key", wantUsage: true},
		{name: "JSON without keys", args: []string{"-"}, stdin: `{}`, wantErr: "the JSON object on stdin has no keys", wantUsage: true},
		{
			name:      "two JSON values",
			args:      []string{"-"},
			stdin:     `{"a": "b"} {"c": "s3cr3t"}`,
			wantErr:   "stdin is not valid JSON: syntax error at byte 12",
			wantUsage: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var prompt strings.Builder
			got, err := readValues(tt.args, strings.NewReader(tt.stdin), &prompt)
			if prompt.Len() > 0 {
				t.Errorf("prompted %q although stdin is not a terminal", prompt.String())
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("readValues(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				var bad *inputError
				if usage := errors.As(err, &bad); usage != tt.wantUsage {
					t.Errorf("error is an input error: %v, want %v", usage, tt.wantUsage)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q reveals a value", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("readValues(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("readValues(%q) mismatch (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

// jsonString encodes s as a JSON string.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestVersionList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sets    []string
		want    versionList
		wantErr string
	}{
		{name: "one", sets: []string{"3"}, want: versionList{3}},
		{name: "list", sets: []string{"1,2,3"}, want: versionList{1, 2, 3}},
		{name: "spaces", sets: []string{" 1, 2 "}, want: versionList{1, 2}},
		{name: "repeated flag", sets: []string{"1,2", "5"}, want: versionList{1, 2, 5}},
		{name: "duplicates dropped, order kept", sets: []string{"3,1,3", "1"}, want: versionList{3, 1}},
		{name: "not a number", sets: []string{"1,two"}, wantErr: `"two" is not a version number`},
		{name: "empty entry", sets: []string{"1,,2"}, wantErr: "the list has an empty entry; give versions like 1,2,3"},
		{name: "empty", sets: []string{""}, wantErr: "the list has an empty entry; give versions like 1,2,3"},
		{name: "zero", sets: []string{"0"}, wantErr: "versions start at 1, got 0"},
		{name: "negative", sets: []string{"-2"}, wantErr: "versions start at 1, got -2"},
		{name: "overflow", sets: []string{"99999999999999999999"}, wantErr: `"99999999999999999999" is not a version number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got versionList
			var err error
			for _, s := range tt.sets {
				if err = got.Set(s); err != nil {
					break
				}
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Set(%q) error = %v, want %q", tt.sets, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Set(%q): %v", tt.sets, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Set(%q) mismatch (-want +got):\n%s", tt.sets, diff)
			}
		})
	}
}

func TestParseCustom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pairs   []string
		want    map[string]string
		wantErr string
	}{
		{name: "none", pairs: nil, want: map[string]string{}},
		{name: "pairs", pairs: []string{"owner=team-a", "note=a,b=c"}, want: map[string]string{"owner": "team-a", "note": "a,b=c"}},
		{name: "empty value", pairs: []string{"owner="}, want: map[string]string{"owner": ""}},
		{name: "no equals sign", pairs: []string{"hidden"}, wantErr: "--custom needs KEY=VALUE, got an argument without '='"},
		{name: "empty key", pairs: []string{"=x"}, wantErr: "--custom has an empty key"},
		{name: "duplicate key", pairs: []string{"a=1", "a=2"}, wantErr: `--custom key "a" is given twice`},
		{name: "invalid UTF-8 value", pairs: []string{"a=\xff"}, wantErr: `the --custom value of key "a" is not valid UTF-8 text`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseCustom(tt.pairs)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("parseCustom(%q) error = %v, want %q", tt.pairs, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCustom(%q): %v", tt.pairs, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseCustom(%q) mismatch (-want +got):\n%s", tt.pairs, diff)
			}
		})
	}
}
