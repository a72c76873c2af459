package engine

import (
	"sync"
	"sync/atomic"
)

// workerPool runs blocking work (REST requests) off the event loops on a fixed
// number of goroutines with a bounded queue. Loops never block on it: trySubmit
// fails instead when the queue is full.
type workerPool struct {
	jobs    chan func()
	quit    chan struct{}
	stopped atomic.Bool
	wg      sync.WaitGroup
	once    sync.Once
}

func newWorkerPool(workers, queue int) *workerPool {
	p := &workerPool{jobs: make(chan func(), queue), quit: make(chan struct{})}
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

func (p *workerPool) work() {
	defer p.wg.Done()
	for {
		select {
		case job := <-p.jobs:
			job()
		case <-p.quit:
			for { // finish what was queued before stop
				select {
				case job := <-p.jobs:
					job()
				default:
					return
				}
			}
		}
	}
}

// trySubmit queues job without blocking and reports whether it was queued.
// Safe for concurrent use.
func (p *workerPool) trySubmit(job func()) bool {
	if p.stopped.Load() {
		return false
	}
	select {
	case p.jobs <- job:
		return true
	default:
		return false
	}
}

// stop lets queued jobs finish and ends the workers.
func (p *workerPool) stop() {
	p.once.Do(func() {
		p.stopped.Store(true)
		close(p.quit)
	})
	p.wg.Wait()
}
