/* The program each layer's library is linked into, whole, with the layers
 * beneath it alone (core/meson.build): it does nothing when run; that it
 * links at all is the proof that the layer calls only downward. */
int main(void)
{
    return 0;
}
