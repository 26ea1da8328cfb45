/*
 * A CPU stand-in for the parts of libcudart and libcublas that
 * src/linalg/cublas_ffi.ts binds, so the GPU BLAS's marshalling, row-major to
 * column-major mapping, leading dimensions and buffer sizes are tested on a
 * machine without a GPU (test/linalg/cublas.test.ts compiles it with cc).
 * "Device" memory is host memory from malloc; every device access is checked
 * against the allocation it falls in, and the BLAS argument checks are
 * cuBLAS's documented ones, so an undersized buffer or a wrong leading
 * dimension fails here as it would on a GPU. The products follow the
 * reference BLAS definitions (column-major, op(X) = X or Xᵀ).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ALLOCS 64
static struct { char *base; size_t bytes; } allocs[MAX_ALLOCS];
static int live_allocs, total_allocs;

/* 1 when [p, p + bytes) lies inside one live allocation. */
static int on_device(const void *p, size_t bytes) {
  for (int i = 0; i < MAX_ALLOCS; i++) {
    char *b = allocs[i].base;
    if (b && (const char *)p >= b && (const char *)p + bytes <= b + allocs[i].bytes) return 1;
  }
  return 0;
}

int cudaMalloc(void **ptr, size_t bytes) {
  for (int i = 0; i < MAX_ALLOCS; i++) {
    if (!allocs[i].base) {
      allocs[i].base = malloc(bytes ? bytes : 1);
      allocs[i].bytes = bytes;
      *ptr = allocs[i].base;
      live_allocs++;
      total_allocs++;
      return 0;
    }
  }
  return 2; /* cudaErrorMemoryAllocation */
}

int cudaFree(void *ptr) {
  for (int i = 0; i < MAX_ALLOCS; i++) {
    if (allocs[i].base == ptr) {
      free(ptr);
      allocs[i].base = 0;
      live_allocs--;
      return 0;
    }
  }
  return 1; /* cudaErrorInvalidValue */
}

/* kind 1: host to device, 2: device to host (cudaMemcpyKind). */
int cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height, int kind) {
  if (width > dpitch || width > spitch) return 1;
  if (height == 0 || width == 0) return 0;
  size_t extent_d = (height - 1) * dpitch + width, extent_s = (height - 1) * spitch + width;
  if (kind == 1 && !on_device(dst, extent_d)) return 1;
  if (kind == 2 && !on_device(src, extent_s)) return 1;
  if (kind != 1 && kind != 2) return 1;
  for (size_t r = 0; r < height; r++) memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
  return 0;
}

const char *cudaGetErrorString(int error) {
  return error == 2 ? "out of memory (fake)" : error == 1 ? "invalid argument (fake)" : "no error (fake)";
}

/* Counters for the test: live and total allocations. */
int fakeCudaLiveAllocations(void) { return live_allocs; }
int fakeCudaTotalAllocations(void) { return total_allocs; }

static int math_mode = -1;
int cublasCreate_v2(void **handle) { *handle = (void *)0x1234; return 0; }
int cublasSetMathMode(void *handle, int mode) { math_mode = mode; return handle == (void *)0x1234 ? 0 : 7; }
int fakeCublasMathMode(void) { return math_mode; }

#define CHECK_MATRIX(p, rows, cols, ld) \
  if ((ld) < ((rows) > 1 ? (rows) : 1) || !on_device((p), (((size_t)(cols) - 1) * (ld) + (rows)) * sizeof(float))) return 7

/* Entry (r, c) of op(A), column-major with leading dimension lda; op transposes when t is set. */
static float op_entry(const float *a, int t, int lda, int r, int c) {
  return t ? a[c + (size_t)r * lda] : a[r + (size_t)c * lda];
}

/* *out = alpha · sum + beta · *out, reading *out only when beta is not 0 (as BLAS does). */
static void scale_into(float *out, float alpha, double sum, float beta) {
  *out = (float)(alpha * sum + (beta == 0 ? 0 : beta * *out));
}

/* C (m×n, ldc) = alpha op(A) op(B) + beta C, column-major; op(A) is m×k. */
int cublasSgemm_v2(void *handle, int ta, int tb, int m, int n, int k, const float *alpha, const float *a, int lda,
                   const float *b, int ldb, const float *beta, float *c, int ldc) {
  if (handle != (void *)0x1234 || m < 0 || n < 0 || k < 0) return 7;
  CHECK_MATRIX(a, ta ? k : m, ta ? m : k, lda);
  CHECK_MATRIX(b, tb ? n : k, tb ? k : n, ldb);
  CHECK_MATRIX(c, m, n, ldc);
  for (int j = 0; j < n; j++) {
    for (int i = 0; i < m; i++) {
      double sum = 0;
      for (int l = 0; l < k; l++) {
        sum += (double)op_entry(a, ta, lda, i, l) * op_entry(b, tb, ldb, l, j);
      }
      scale_into(&c[i + (size_t)j * ldc], *alpha, sum, *beta);
    }
  }
  return 0;
}

/* C (n×n) = alpha op(A) op(A)ᵀ + beta C on the uplo triangle (0 lower, 1 upper); op(A) is n×k. */
int cublasSsyrk_v2(void *handle, int uplo, int trans, int n, int k, const float *alpha, const float *a, int lda,
                   const float *beta, float *c, int ldc) {
  if (handle != (void *)0x1234 || n < 0 || k < 0) return 7;
  CHECK_MATRIX(a, trans ? k : n, trans ? n : k, lda);
  CHECK_MATRIX(c, n, n, ldc);
  for (int j = 0; j < n; j++) {
    for (int i = uplo ? 0 : j; uplo ? i <= j : i < n; i++) {
      double sum = 0;
      for (int l = 0; l < k; l++) {
        sum += (double)op_entry(a, trans, lda, i, l) * op_entry(a, trans, lda, j, l);
      }
      scale_into(&c[i + (size_t)j * ldc], *alpha, sum, *beta);
    }
  }
  return 0;
}
