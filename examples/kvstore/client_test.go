package main

// The end-to-end tests' HTTP client of the kvstore API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"
)

var httpClient = &http.Client{
	Timeout:   3 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

// errDefinite marks a write the cluster refused without doing it.
var errDefinite = errors.New("refused")

func put(ctx context.Context, addr, key, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The node (or the leader it redirected to) is down: the
			// request never reached it.
			return fmt.Errorf("%w: %v", errDefinite, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct{ Code string }
	json.Unmarshal(body, &e)
	err = fmt.Errorf("PUT %s at %s: %s: %s", key, addr, resp.Status, strings.TrimSpace(string(body)))
	if e.Code == "not_leader" || e.Code == "no_leader" || e.Code == "stopped" {
		err = fmt.Errorf("%w: %v", errDefinite, err)
	}
	return err
}

// get reads key; found is false for 404.
func get(ctx context.Context, addr, key string, linearizable bool) (value string, found bool, err error) {
	u := "http://" + addr + "/kv/" + key
	if linearizable {
		u += "?linearizable=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return string(body), true, nil
	case http.StatusNotFound:
		return "", false, nil
	default:
		return "", false, fmt.Errorf("GET %s at %s: %s: %s", key, addr, resp.Status, strings.TrimSpace(string(body)))
	}
}
