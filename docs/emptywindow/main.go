//go:build ignore

// Command emptywindow is the baseline for bench/app.sh: an empty Fyne
// window of the same size as gatepass's, measured beside it.
//
//	go run docs/emptywindow/main.go            # blank: draws nothing at all
//	go run docs/emptywindow/main.go "Hello Fyne!"  # Fyne's hello-world label
//
// With no argument the window's one label is empty, so nothing is drawn and
// llvmpipe never compiles its texture shader (≈ 119 MB under Xvfb). With a
// text argument it is Fyne's hello-world window: the first text drawn loads
// that shader (+15 MB of libLLVM code pages, ≈ 135 MB), which is the
// "empty Fyne v2.7 window ≈ 135 MB" that issue 4 quotes.
package main

import (
	"os"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"
)

func main() {
	text := ""
	if len(os.Args) > 1 {
		text = os.Args[1]
	}
	a := app.NewWithID("dev.gatepass.bench.empty")
	w := a.NewWindow("empty")
	w.SetContent(widget.NewLabel(text))
	w.Resize(fyne.NewSize(760, 680))
	w.ShowAndRun()
}
