// rows.glsl: what the row-wise layer shaders share (included): the workgroup size, a
// specialization constant the backend sets from the device's subgroup size (a power of two
// <= MAX_GROUP), and a float sum or maximum over the workgroup through shared memory.

#define MAX_GROUP 256

layout(local_size_x_id = 0) in;

shared float red[MAX_GROUP];

// Every thread of the workgroup must call these (they hold barriers); all get the result.
float group_sum(float v)
{
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2u; h > 0u; h /= 2u) {
        if (tid < h)
            red[tid] += red[tid + h];
        barrier();
    }
    float r = red[0];
    barrier(); // red is reused by the next call
    return r;
}

float group_max(float v)
{
    uint tid = gl_LocalInvocationID.x;
    red[tid] = v;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2u; h > 0u; h /= 2u) {
        if (tid < h)
            red[tid] = max(red[tid], red[tid + h]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}
