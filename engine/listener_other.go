//go:build !linux

package engine

import "errors"

// closeListener is only possible on Linux (listener_linux.go); elsewhere the drain
// resets new sockets in OnOpen instead.
func (s *Server) closeListener() error {
	return errors.New("engine: closing the listening socket during a drain needs Linux")
}
