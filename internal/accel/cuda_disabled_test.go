//go:build !cuda

package accel_test

import (
	"errors"
	"testing"

	"github.com/embedd/embedd/internal/accel"
)

func TestCUDADevicesDisabled(t *testing.T) {
	if _, err := accel.CUDADevices(); !errors.Is(err, accel.ErrNotEnabled) {
		t.Errorf("got %v; want ErrNotEnabled", err)
	}
}
