// SPDX-License-Identifier: Apache-2.0

package memwatch

// What only the tests read.

// Watched is how many cgroups are watched.
func (w *Watcher) Watched() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watched)
}
