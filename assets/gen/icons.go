//go:build ignore

// Command icons draws gatepass's PNG icons: the 512 px app icon
// (assets/icon.png) and the 64 px tray icons, one per state
// (assets/tray/<state>.png). Run from the assets directory:
//
//	go run gen/icons.go
//
// The glyph is a white key on a navy rounded square; tray icons add a
// coloured status dot. Shapes are signed-distance functions sampled 8×8 per
// pixel, so edges are anti-aliased without any dependency.
package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
	"path/filepath"
)

type vec struct{ x, y float64 }

func (a vec) sub(b vec) vec     { return vec{a.x - b.x, a.y - b.y} }
func (a vec) add(b vec) vec     { return vec{a.x + b.x, a.y + b.y} }
func (a vec) mul(k float64) vec { return vec{a.x * k, a.y * k} }
func (a vec) dot(b vec) float64 { return a.x*b.x + a.y*b.y }
func (a vec) length() float64   { return math.Hypot(a.x, a.y) }
func rotate(p vec, rad float64) vec {
	s, c := math.Sincos(rad)
	return vec{p.x*c - p.y*s, p.x*s + p.y*c}
}

// A shape is inside where its distance is <= 0.
type shape func(p vec) float64

func circle(c vec, r float64) shape { return func(p vec) float64 { return p.sub(c).length() - r } }

func ring(c vec, r, w float64) shape {
	return func(p vec) float64 { return math.Abs(p.sub(c).length()-r) - w/2 }
}

func segment(a, b vec, w float64) shape {
	return func(p vec) float64 {
		pa, ba := p.sub(a), b.sub(a)
		h := math.Max(0, math.Min(1, pa.dot(ba)/ba.dot(ba)))
		return pa.sub(ba.mul(h)).length() - w/2
	}
}

func roundRect(min, max vec, r float64) shape {
	c := min.add(max).mul(0.5)
	half := max.sub(min).mul(0.5)
	return func(p vec) float64 {
		q := vec{math.Abs(p.x-c.x) - half.x + r, math.Abs(p.y-c.y) - half.y + r}
		out := vec{math.Max(q.x, 0), math.Max(q.y, 0)}.length()
		return out + math.Min(math.Max(q.x, q.y), 0) - r
	}
}

func union(ss ...shape) shape {
	return func(p vec) float64 {
		d := math.Inf(1)
		for _, s := range ss {
			d = math.Min(d, s(p))
		}
		return d
	}
}

// transformed moves a shape drawn around the origin to centre c, rotated.
func transformed(s shape, c vec, rad float64) shape {
	return func(p vec) float64 { return s(rotate(p.sub(c), -rad)) }
}

type layer struct {
	s   shape
	col color.NRGBA
}

var (
	navy  = color.NRGBA{0x1e, 0x3a, 0x5f, 0xff}
	white = color.NRGBA{0xff, 0xff, 0xff, 0xff}
)

// key is the glyph around the origin, about 0.6 units long.
func key() shape {
	const w = 0.085
	return union(
		ring(vec{-0.2, 0}, 0.13, w),
		segment(vec{-0.075, 0}, vec{0.31, 0}, w),
		segment(vec{0.2, 0}, vec{0.2, 0.12}, w*0.9),
		segment(vec{0.29, 0}, vec{0.29, 0.15}, w*0.9),
	)
}

func layers(dot *color.NRGBA) []layer {
	centre := vec{0.5, 0.5}
	if dot != nil {
		centre = vec{0.43, 0.41} // leave room for the dot
	}
	ls := []layer{
		{roundRect(vec{0.03, 0.03}, vec{0.97, 0.97}, 0.22), navy},
		{transformed(key(), centre, -math.Pi/4), white},
	}
	if dot != nil {
		c := vec{0.77, 0.77}
		ls = append(ls, layer{circle(c, 0.21), white}, layer{circle(c, 0.165), *dot})
	}
	return ls
}

// render samples the layers n×n times per pixel and composites them
// front to back (last layer on top) with straight alpha.
func render(size int, ls []layer) *image.NRGBA {
	const n = 8
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var r, g, b, a float64
			for sy := 0; sy < n; sy++ {
				for sx := 0; sx < n; sx++ {
					p := vec{(float64(x) + (float64(sx)+0.5)/n) / float64(size), (float64(y) + (float64(sy)+0.5)/n) / float64(size)}
					for i := len(ls) - 1; i >= 0; i-- {
						if ls[i].s(p) <= 0 {
							c := ls[i].col
							r += float64(c.R)
							g += float64(c.G)
							b += float64(c.B)
							a++
							break
						}
					}
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(x, y, color.NRGBA{uint8(r/a + 0.5), uint8(g/a + 0.5), uint8(b/a + 0.5), uint8(a*255/(n*n) + 0.5)})
		}
	}
	return img
}

func write(path string, img image.Image) {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}

func main() {
	dots := map[string]color.NRGBA{
		"signed-in":        {0x22, 0xc5, 0x5e, 0xff}, // green
		"expiring":         {0xf5, 0x9e, 0x0b, 0xff}, // amber: expiring soon or refreshing
		"sign-in-required": {0xef, 0x44, 0x44, 0xff}, // red
		"signed-out":       {0x9c, 0xa3, 0xaf, 0xff}, // grey
	}
	for name, c := range dots {
		write(filepath.Join("tray", name+".png"), render(64, layers(&c)))
	}
	write("icon.png", render(512, layers(nil)))
}
