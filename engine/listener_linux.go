//go:build linux

package engine

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// closeListener closes the public port's listening socket while the reactor keeps
// serving the connections it has, so the kernel refuses new ones (operations.md §2,
// drain step 2): a balancer's TCP check then sees the node go, not just its HTTP check.
//
// gnet v2.9.7 cannot stop listening without stopping every loop: a shutdown(2) of its
// listening socket makes accept fail with EINVAL, which its main reactor treats as
// fatal (acceptor_unix.go accept0 → ErrAcceptSocket). So the socket is taken from under
// it instead. The descriptor number gnet holds is made to refer to a placeholder with
// dup3(2): a listening AF_UNIX socket on an abstract address nobody knows, on which
// accept only ever says EAGAIN ("nothing to accept" to gnet). Closing our duplicate then
// drops the last reference to the real socket, which closes it in the kernel and takes
// it out of the reactor's epoll set. An accept already under way when the number is
// swapped reads the placeholder and gets EAGAIN. gnet closes the placeholder when the
// engine stops.
func (s *Server) closeListener() error {
	dup, err := s.eng.Dup()
	if err != nil {
		return fmt.Errorf("engine: duplicate the listening socket: %w", err)
	}
	defer unix.Close(dup) // on success, the last reference to the listening socket
	var want unix.Stat_t
	if err := unix.Fstat(dup, &want); err != nil {
		return fmt.Errorf("engine: fstat the listening socket: %w", err)
	}
	orig, err := fdOf(want, dup)
	if err != nil {
		return err
	}
	ph, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("engine: placeholder socket: %w", err)
	}
	defer unix.Close(ph)
	// An empty name autobinds to an unused abstract address; listen needs an address.
	if err := unix.Bind(ph, &unix.SockaddrUnix{}); err != nil {
		return fmt.Errorf("engine: bind the placeholder socket: %w", err)
	}
	if err := unix.Listen(ph, 1); err != nil {
		return fmt.Errorf("engine: listen on the placeholder socket: %w", err)
	}
	if err := unix.Dup3(ph, orig, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("engine: swap the listening socket out: %w", err)
	}
	return nil
}

// fdOf finds the descriptor, other than skip, that refers to the file want describes.
// It counts up from 0: the listening socket is opened at start, before any connection,
// so its number is small, and the search does not grow with the connections held.
func fdOf(want unix.Stat_t, skip int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return -1, fmt.Errorf("engine: find the listening socket: %w", err)
	}
	for fd := 0; uint64(fd) < lim.Cur; fd++ {
		var st unix.Stat_t
		if fd != skip && unix.Fstat(fd, &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			return fd, nil
		}
	}
	return -1, errors.New("engine: the listening socket's descriptor was not found")
}
