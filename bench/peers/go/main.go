// Go peer: net/http server; each /fanout request calls the upstream n times
// concurrently, one goroutine per call, through one shared http.Client.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	upstream = os.Getenv("UPSTREAM")
	// The default Transport keeps 2 idle connections per host
	// (DefaultMaxIdleConnsPerHost): with 256 calls in flight (S2) it would
	// close and reopen connections all the time. Sized for the load instead:
	// MaxIdleConns 0 is no total cap, MaxIdleConnsPerHost keeps the
	// connections of a 10,000-call fan-out (S3), and ForceAttemptHTTP2 says
	// that https origins that offer HTTP/2 get it (as the default Transport).
	client = &http.Client{Transport: &http.Transport{
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 10240,
		IdleConnTimeout:     120 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
)

func fetchValue(ms string) (float64, error) {
	resp, err := client.Get(upstream + "/delay?ms=" + url.QueryEscape(ms))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("upstream: %s", resp.Status)
	}
	var v struct{ Value float64 }
	err = json.Unmarshal(body, &v)
	return v.Value, err
}

func fanout(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	delays := strings.Split(q.Get("ms"), ",")
	if err != nil || n < 1 || (len(delays) != 1 && len(delays) != n) {
		http.Error(w, "bad n or ms", http.StatusBadRequest)
		return
	}
	values := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range values {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			values[i], errs[i] = fetchValue(delays[i%len(delays)])
		}(i)
	}
	wg.Wait()
	sum := 0.0
	for i, v := range values {
		if errs[i] != nil {
			http.Error(w, errs[i].Error(), http.StatusBadGateway)
			return
		}
		sum += v
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"sum": sum, "n": n})
}

func main() {
	http.HandleFunc("/fanout", fanout)
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}
