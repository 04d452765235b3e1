package brotli

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
)

// benchPage is scripts/bench.sh's 100 KB HTML page (a table of links).
func benchPage() []byte {
	var b bytes.Buffer
	b.WriteString("<html><body><table>\n")
	for i := 0; b.Len() < 100*1024; i++ {
		fmt.Fprintf(&b, "<tr><td class=\"n\">%d</td><td><a href=\"/item/%d\">item number %d</a></td><td>%x</td></tr>\n", i, i*7, i, uint64(i)*2654435761)
	}
	b.WriteString("</table></body></html>\n")
	return b.Bytes()
}

// BenchmarkCompress compares brotli at the levels ngx_brotli users pick (4-6; the
// old encoder and NewWriterV2) with klauspost's gzip at levels 1 and 6 on the page,
// each writer reused as the filter reuses them. The ratio is reported as a metric.
func BenchmarkCompress(b *testing.B) {
	page := benchPage()
	var out bytes.Buffer
	type enc struct {
		name string
		w    io.WriteCloser
		rst  func()
	}
	var encs []enc
	for _, lv := range []int{1, 6} {
		w, _ := gzip.NewWriterLevel(&out, lv)
		encs = append(encs, enc{fmt.Sprintf("gzip-%d", lv), w, func() { w.Reset(&out) }})
	}
	for _, lv := range []int{4, 5, 6} {
		w := brotli.NewWriterLevel(&out, lv)
		encs = append(encs, enc{fmt.Sprintf("br-%d", lv), w, func() { w.Reset(&out) }})
		w2 := brotli.NewWriterV2(&out, lv)
		encs = append(encs, enc{fmt.Sprintf("brV2-%d", lv), w2, func() { w2.Reset(&out) }})
	}
	for _, e := range encs {
		b.Run(e.name, func(b *testing.B) {
			b.SetBytes(int64(len(page)))
			for i := 0; i < b.N; i++ {
				out.Reset()
				e.rst()
				e.w.Write(page)
				e.w.Close()
			}
			b.ReportMetric(float64(len(page))/float64(out.Len()), "ratio")
		})
	}
}
