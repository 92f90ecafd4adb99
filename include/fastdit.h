/*
 * fastdit C API: load a diffusion transformer, ask what its forward takes, run it on
 * DLPack tensors. Stable: functions are only ever added; the option structs start with
 * their own size, so a caller built against an older header keeps working.
 *
 * Conventions
 *  - Every function that can fail returns a fastdit_status; on failure
 *    fastdit_last_error() gives this thread's message, which names what was wrong and
 *    where (a missing file, a tensor of the wrong rank, an unknown argument). No C++
 *    exception crosses this boundary.
 *  - Threads: every function may be called from any thread. Loads, forwards and frees of
 *    models are serialised by one process-wide lock (the engine's device state is
 *    process-wide); safetensors reads and writes run concurrently; deleters of returned
 *    tensors take no lock. Callbacks run on the calling thread, inside the lock, and must
 *    not call back into fastdit.
 *  - Strings returned by a model (names, paths) live as long as the model.
 *  - Tensors in are borrowed DLTensors (DLPack, dlpack/dlpack.h): fastdit reads them during
 *    the call and never calls a deleter of the caller's. Tensors out are DLManagedTensors the
 *    caller owns: call managed->deleter(managed) when done, or hand them to a DLPack consumer
 *    (torch.utils.dlpack.from_dlpack), which calls it.
 */
#ifndef FASTDIT_H
#define FASTDIT_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FASTDIT_API_VERSION 1

typedef enum fastdit_status {
  FASTDIT_OK = 0,
  /* The call itself is malformed: a null pointer, an option or DLPack tensor fastdit cannot
     read (dtype, device, lanes, negative strides), an output array too small. */
  FASTDIT_ERROR_INVALID_ARGUMENT = 1,
  /* The engine refused: a bad path or file, a config it does not accept, an input of the
     wrong name, rank, shape or type, a device that is not there. */
  FASTDIT_ERROR_ENGINE = 2,
  FASTDIT_ERROR_OUT_OF_MEMORY = 3,  /* host memory; CUDA memory is FASTDIT_ERROR_ENGINE */
  FASTDIT_ERROR_INTERNAL = 4        /* anything else (a bug: please report the message) */
} fastdit_status;

/* FASTDIT_API_VERSION of the library (which may be newer than the header). */
int32_t fastdit_api_version(void);
/* This thread's message for its last failed call ("" when none). Valid until the thread's
   next failing call. */
const char* fastdit_last_error(void);

/* ---- log and progress ---------------------------------------------------------------- */

typedef enum fastdit_log_level {
  FASTDIT_LOG_DEBUG = 0,
  FASTDIT_LOG_INFO = 1,
  FASTDIT_LOG_WARNING = 2
} fastdit_log_level;

typedef void (*fastdit_log_fn)(int32_t level, const char* message, void* user_data);
/* Where the library's log lines go (process-wide; NULL: nowhere, the default). */
void fastdit_set_log_callback(fastdit_log_fn callback, void* user_data);

/* A stage of a long call ("loading weights") with its count done of total. */
typedef void (*fastdit_progress_fn)(const char* stage, int64_t done, int64_t total, void* user_data);

/* ---- models --------------------------------------------------------------------------- */

typedef struct fastdit_model fastdit_model;

typedef struct fastdit_load_options {
  size_t struct_size;      /* sizeof(fastdit_load_options); fastdit_load_options_init sets it */
  const char* device;      /* "cpu" (NULL), "cuda", "cuda:N" */
  /* The run precision: "float32" (NULL), "bfloat16", "float16". Parameters the reference
     keeps in float32 (norms, Wan's scale_shift_table, time embedders) stay float32. */
  const char* dtype;
  int32_t fuse_projections; /* -1: auto (on for CUDA, off on the CPU), 0: off, 1: on */
  /* NULL or "": the fastest that serves each call; "cudnn", "flash" or "reference": that one
     or an error. Process-wide (the engine reads FASTDIT_ATTENTION_BACKEND, which this sets):
     a load naming another backend than the one in effect is an error. CUDA only. */
  const char* attention_backend;
  fastdit_progress_fn progress;
  void* progress_user_data;
  /* "bf16" (NULL): every linear in the run dtype. "fp8": the transformer blocks' attention
     and FFN linears as FP8 e4m3 GEMMs, weights quantized per output channel at load (CUDA,
     dtype "bfloat16"; DESIGN.md, precision). */
  const char* precision;
} fastdit_load_options;

void fastdit_load_options_init(fastdit_load_options* options);

/* Loads a transformer folder (config.json + safetensors) or a pipeline folder holding
   transformer/. options may be NULL (the defaults). */
fastdit_status fastdit_model_load(const char* path, const fastdit_load_options* options, fastdit_model** model);
void fastdit_model_free(fastdit_model* model); /* NULL is fine */

/* The model's class ("WanTransformer3DModel"), the transformer folder read (its config.json
   is the diffusers config), the device ("cuda:0") and run dtype ("bfloat16"). */
const char* fastdit_model_class_name(const fastdit_model* model);
const char* fastdit_model_dir(const fastdit_model* model);
const char* fastdit_model_device(const fastdit_model* model);
const char* fastdit_model_dtype(const fastdit_model* model);

/* ---- the forward's declaration ---------------------------------------------------------
 * Tensor inputs, typed non-tensor arguments and output heads, named as the official
 * forward's keyword arguments and as the reference names its outputs. */

typedef enum fastdit_element_kind {
  FASTDIT_ELEMENTS_FLOATING = 0,
  FASTDIT_ELEMENTS_INTEGER = 1,
  FASTDIT_ELEMENTS_BOOL = 2,
  FASTDIT_ELEMENTS_NUMBER = 3 /* any floating or integer dtype */
} fastdit_element_kind;

typedef enum fastdit_input_role {
  FASTDIT_ROLE_OTHER = 0,
  FASTDIT_ROLE_LATENTS = 1,
  FASTDIT_ROLE_TIMESTEP = 2,
  FASTDIT_ROLE_TEXT_EMBEDDINGS = 3
} fastdit_input_role;

typedef struct fastdit_input_info {
  const char* name;
  int32_t required;
  int32_t element_kind;  /* fastdit_element_kind */
  int32_t role;          /* fastdit_input_role */
  int32_t num_ranks;     /* 0: any rank */
  const int64_t* ranks;  /* the accepted ranks */
} fastdit_input_info;

typedef enum fastdit_arg_type {
  FASTDIT_ARG_BOOL = 0,
  FASTDIT_ARG_INT = 1,
  FASTDIT_ARG_FLOAT = 2,
  FASTDIT_ARG_INT_LIST = 3,
  FASTDIT_ARG_FLOAT_LIST = 4
} fastdit_arg_type;

typedef struct fastdit_arg_info {
  const char* name;
  int32_t type;          /* fastdit_arg_type */
  int32_t required;
  const char* default_json; /* the default as JSON ("24.0", "[1, 2]"), or NULL: absent means None */
} fastdit_arg_info;

int64_t fastdit_model_num_inputs(const fastdit_model* model);
fastdit_status fastdit_model_input(const fastdit_model* model, int64_t index, fastdit_input_info* info);
int64_t fastdit_model_num_args(const fastdit_model* model);
fastdit_status fastdit_model_arg(const fastdit_model* model, int64_t index, fastdit_arg_info* info);
int64_t fastdit_model_num_outputs(const fastdit_model* model); /* the first head is the prediction */
/* 1 for keyword arguments the reference forwards take that change nothing here (how results
   are returned, attention-processor hooks: return_dict, attention_kwargs, ...), which a
   forward accepts and drops; else 0. */
int32_t fastdit_ignored_argument(const char* name);
const char* fastdit_model_output_name(const fastdit_model* model, int64_t index); /* NULL out of range */

/* ---- the forward ----------------------------------------------------------------------- */

typedef struct fastdit_tensor_arg {
  const char* name;
  const DLTensor* tensor; /* borrowed for the call */
} fastdit_tensor_arg;

/* A non-tensor argument. Bools and ints in int_value, floats in float_value, lists in
   int_list / float_list with list_length values. An int is accepted where a float is
   declared, nothing else converts. */
typedef struct fastdit_tensor_out {
  const char* name;        /* the model's string */
  DLManagedTensor* tensor; /* the caller's */
} fastdit_tensor_out;

typedef struct fastdit_value_arg {
  const char* name;
  int32_t type; /* fastdit_arg_type */
  int64_t int_value;
  double float_value;
  const int64_t* int_list;
  const double* float_list;
  int64_t list_length;
} fastdit_value_arg;

typedef struct fastdit_forward_options {
  size_t struct_size; /* sizeof(fastdit_forward_options); fastdit_forward_options_init sets it */
  /* The caller's CUDA stream (cudaStream_t; 0 the legacy default stream) for a CUDA model:
     fastdit's work starts after what the stream holds at the call and the stream's later
     work runs after fastdit's, so tensors made on it may be passed and the outputs used on
     it without any other synchronisation. The call returns once the work is queued. An
     output's deleter orders fastdit's later reuse of its memory after what this stream
     holds at that time, so the stream must outlive the outputs. Ignored on the CPU. */
  void* cuda_stream;
  int32_t outputs_on_host;  /* 1: outputs copied to the CPU (the call then waits for them) */
  int32_t outputs_float32;  /* 1: outputs converted to float32 */
} fastdit_forward_options;

void fastdit_forward_options_init(fastdit_forward_options* options);

/* One forward. Tensor inputs on the CPU are copied to the model's device; inputs on a GPU
   must be on the model's. Every output head the call returns is written to outputs[i] in
   declaration order and *num_outputs set (heads a model returns only when an argument asks
   for them, such as LongCat-Video's return_kv cache, come after the others and only then);
   capacity must be at least fastdit_model_num_outputs. On failure no
   output is written. options may be NULL (the defaults). */
fastdit_status fastdit_model_forward(fastdit_model* model, const fastdit_tensor_arg* inputs, int64_t num_inputs,
                                     const fastdit_value_arg* args, int64_t num_args,
                                     const fastdit_forward_options* options, fastdit_tensor_out* outputs,
                                     int64_t capacity, int64_t* num_outputs);

/* ---- safetensors ------------------------------------------------------------------------ */

typedef struct fastdit_safetensors fastdit_safetensors;

/* Opens and validates a .safetensors file (mapped, not read). */
fastdit_status fastdit_safetensors_open(const char* path, fastdit_safetensors** file);
void fastdit_safetensors_close(fastdit_safetensors* file); /* tensors taken out stay valid */
int64_t fastdit_safetensors_count(const fastdit_safetensors* file);
/* Tensor `index` in header order as a CPU tensor the caller owns: over the mapped file, or,
   with widen_to_float32 set, bfloat16 and float8 converted to float32 (for consumers, such
   as numpy, that lack those types). *name lives as long as the file handle. */
fastdit_status fastdit_safetensors_get(const fastdit_safetensors* file, int64_t index, int32_t widen_to_float32,
                                       const char** name, DLManagedTensor** tensor);

/* Writes the tensors (any device, dtype, strides; stored contiguous) and string metadata
   (num_metadata key/value pairs) to path, through a temporary file renamed over it. */
fastdit_status fastdit_safetensors_write(const char* path, const fastdit_tensor_arg* tensors, int64_t num_tensors,
                                         const char* const* metadata_keys, const char* const* metadata_values,
                                         int64_t num_metadata);

#ifdef __cplusplus
}
#endif

#endif /* FASTDIT_H */
