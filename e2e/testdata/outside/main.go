// Command outside is a workload in a module of its own, outside SPIKE's
// workspace: e2e/client_test.go copies it into a temporary module that
// reaches SPIKE's modules only through replace lines, builds it without
// network and runs it against a stack. It puts, gets and watches the
// secret at os.Args[1] with the client package and prints what it saw.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spike-dev/spike/shared/client"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := run(ctx, os.Args[1])
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "outside:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string) error {
	cfg, err := client.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	v, err := c.Put(ctx, path, map[string]string{"color": "blue"}, client.CAS(0))
	if err != nil {
		return err
	}
	fmt.Printf("put %d\n", v.Version)
	s, err := c.Get(ctx, path)
	if err != nil {
		return err
	}
	fmt.Printf("get %d %s\n", s.Version, s.Data["color"])
	if _, err := c.Put(ctx, path, map[string]string{"color": "red"}, client.CAS(0)); !errors.Is(err, client.ErrConflict) {
		return fmt.Errorf("a put with a stale check-and-set: %v, want ErrConflict", err)
	}
	fmt.Println("conflict ok")

	last, err := watchWhilePutting(ctx, c, path)
	if err != nil {
		return err
	}
	fmt.Println("watch ok")
	if err := resume(ctx, c, path, last); err != nil {
		return err
	}
	fmt.Println("resume ok")
	return nil
}

// watchWhilePutting watches path and writes new versions until the watch
// sees one (a watch without a cursor starts when its stream is up, which
// the program cannot see), then reads events up to the last version it
// wrote: each once, in order, with the data written. It returns the last
// event.
func watchWhilePutting(ctx context.Context, c *client.Client, path string) (client.Event, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan client.Event, 100)
	failed := make(chan error, 1)
	go func() {
		for ev, err := range c.Watch(wctx, path, client.WatchOptions{IncludeData: true}) {
			if err != nil {
				failed <- err
				return
			}
			events <- ev
		}
	}()
	written := map[int64]string{}
	var lastWritten int64
	var first client.Event
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
put:
	for i := 0; ; i++ {
		color := fmt.Sprintf("c%d", i)
		v, err := c.Put(ctx, path, map[string]string{"color": color})
		if err != nil {
			return client.Event{}, err
		}
		written[v.Version], lastWritten = color, v.Version
		select {
		case first = <-events:
			break put
		case err := <-failed:
			return client.Event{}, fmt.Errorf("watch: %w", err)
		case <-ctx.Done():
			return client.Event{}, fmt.Errorf("no event after %d puts: %w", i+1, ctx.Err())
		case <-tick.C:
		}
	}
	if len(first.Versions) != 1 {
		return client.Event{}, fmt.Errorf("a write's event names versions %v, want one", first.Versions)
	}
	ev, want := first, first.Versions[0]
	for {
		if ev.Path != path || ev.Kind != client.KindWritten || !slices.Equal(ev.Versions, []int64{want}) || ev.Data["color"] != written[want] {
			return client.Event{}, fmt.Errorf("event %+v, want version %d of %s written with color %q", ev, want, path, written[want])
		}
		if want == lastWritten {
			if ev.Cursor == "" {
				return client.Event{}, fmt.Errorf("the last event has no cursor: %+v", ev)
			}
			return ev, nil
		}
		want++
		select {
		case ev = <-events:
		case err := <-failed:
			return client.Event{}, fmt.Errorf("watch: %w", err)
		case <-ctx.Done():
			return client.Event{}, fmt.Errorf("waiting for version %d: %w", want, ctx.Err())
		}
	}
}

// resume writes two versions with no watch running, then watches from the
// cursor of last: it must see exactly those two, in order.
func resume(ctx context.Context, c *client.Client, path string, last client.Event) error {
	for _, color := range []string{"r1", "r2"} {
		if _, err := c.Put(ctx, path, map[string]string{"color": color}); err != nil {
			return err
		}
	}
	want := []string{"r1", "r2"}
	next := last.Versions[0] + 1
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for ev, err := range c.Watch(wctx, path, client.WatchOptions{Cursor: last.Cursor, IncludeData: true}) {
		if err != nil {
			return fmt.Errorf("watch from a cursor: %w (still waiting for %q)", err, want)
		}
		if !slices.Equal(ev.Versions, []int64{next}) || ev.Data["color"] != want[0] {
			return fmt.Errorf("after the cursor: event %+v, want version %d with color %q", ev, next, want[0])
		}
		next, want = next+1, want[1:]
		if len(want) == 0 {
			return nil
		}
	}
	return errors.New("the watch ended")
}
