//go:build ignore

// Command emptywindow is the baseline for bench/app.sh: an empty Fyne
// window of the same size as gatepass's, measured beside it.
//
//	go run docs/emptywindow/main.go
package main

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"
)

func main() {
	a := app.NewWithID("dev.gatepass.bench.empty")
	w := a.NewWindow("empty")
	w.SetContent(widget.NewLabel(""))
	w.Resize(fyne.NewSize(760, 680))
	w.ShowAndRun()
}
